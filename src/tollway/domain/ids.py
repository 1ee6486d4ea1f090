"""Identifiers: lowercase canonical UUIDs (version 7: a millisecond timestamp, then random bits) and request ids.

Time-ordered ids land at the right edge of every B-tree they are indexed in, so inserting a batch of ledger, hold
and log rows touches a handful of pages instead of one random page per row: the write-ahead log and the commit
stay small, on SQLite and PostgreSQL alike. They are still unguessable (74 random bits).
"""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """A UUIDv7 (RFC 9562) as a lowercase canonical string."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    h = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, without building the object (hot path)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_request_id() -> str:
    """``req_`` + 32 lowercase hex digits, time-ordered like ``new_id``."""
    return "req_" + new_id().replace("-", "")
