"""The console's values (SPEC §17.1): a signed-in session as stored, a secret a form shows once, and the daily usage
aggregates its charts draw.

A session is known by a digest of its id (the cookie holds the id); it names the key it was opened with by id,
never by the key, so that every request can re-check the key through the same lookup the API uses."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from tollway.domain.keys import KeyKind

IDLE_EXPIRY: Final = timedelta(hours=12)
TOUCH_EVERY: Final = timedelta(minutes=1)  # last_seen_at is written at most this often per session
# A form that creates a secret redirects to the page that shows it (post/redirect/get); that page must be opened
# within this long, once.
SHOWN_ONCE_TTL: Final = timedelta(minutes=10)  # a secret not shown within this is deleted unseen
MAX_PENDING_SECRETS: Final = 16  # secrets a session holds unseen at once; one more drops the one expiring first


def session_digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("ascii", "replace")).digest()


@dataclass(frozen=True, slots=True)
class StoredSession:
    id_hash: bytes
    kind: KeyKind
    key_id: str | None  # None for the operator
    operator_check: bytes | None  # the operator's: SHA-256 of the operator key's digest when the session began
    platform_id: str | None
    end_user_id: str | None
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime

    def idle_expired(self, now: datetime) -> bool:
        return now - self.last_seen_at >= IDLE_EXPIRY

    def due_touch(self, now: datetime) -> bool:
        return now - self.last_seen_at >= TOUCH_EVERY


@dataclass(frozen=True, slots=True)
class ShownOnce:
    """A new key or signing secret as the page after its creating form shows it, exactly once: a title, the secret,
    a note, and optionally a link to the new object (a console path)."""

    title: str
    secret: str
    note: str
    link: str | None = None
    link_text: str | None = None


def shown_once_context(id_hash: bytes) -> str:
    """The sealing context of a session's shown-once secret: it opens for this session only."""
    return f"console-shown-once/{id_hash.hex()}"


@dataclass(frozen=True, slots=True)
class ModelDay:
    """One UTC day of one model's usage rows: counts, raw cost and summed latency."""

    day: str  # YYYY-MM-DD (UTC)
    model: str
    requests: int
    errors: int
    cost_nanos: int
    latency_ms_total: int


@dataclass(frozen=True, slots=True)
class SpenderDay:
    """One UTC day of one end user's raw cost (``end_user_id`` None: calls made with platform keys)."""

    day: str
    end_user_id: str | None
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class Spender:
    end_user_id: str
    label: str  # the end user's external_id
    cost_nanos: int
