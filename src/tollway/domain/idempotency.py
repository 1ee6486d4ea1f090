"""The values of an Idempotency-Key record (SPEC §9.7): who a key belongs to, the response stored for it, and what
claiming a key finds (this request owns it, or another request had it first)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class IdempotencyIdentity:
    scope: str  # the platform id, or "operator"
    method: str
    path: str
    key: str


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """This request owns the key; ``created_at`` is the key's first use."""

    id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Existing:
    """Another request has the key: still running (``response`` None) or done."""

    fingerprint: str
    response: StoredResponse | None
