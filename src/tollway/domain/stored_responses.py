"""The values of a stored response (SPEC §7.6), kept through ``domain.ports.inference.ResponseRepository``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Owner:
    """Who may read a stored response: its platform and end user (None for platform keys, SPEC §15)."""

    platform_id: str
    end_user_id: str | None


@dataclass(frozen=True, slots=True)
class StoredResponse:
    input_items: list[dict[str, Any]]  # the expanded input: the whole context the call was made with
    body: dict[str, Any]  # the result object, output and metadata included
