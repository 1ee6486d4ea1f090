"""A webhook delivery as the dispatcher claims it (SPEC §11.3, §11.4): what one attempt needs, secrets still sealed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    """A claimed delivery with what its attempt needs (secrets still sealed)."""

    id: str
    platform_id: str
    endpoint_id: str
    url: str
    secret_sealed: bytes
    previous_secret_sealed: bytes | None
    previous_secret_expires_at: datetime | None
    webhook_id: str
    body: bytes
    attempts: list[dict[str, Any]]
