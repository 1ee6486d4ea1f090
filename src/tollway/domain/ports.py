"""The Protocols services need from storage and providers; concrete classes are wired in app.py only."""

from __future__ import annotations

from typing import Protocol

from tollway.domain.tenancy import KeyRecord


class KeyLookup(Protocol):
    async def find_active(self, digest: bytes) -> KeyRecord | None: ...
