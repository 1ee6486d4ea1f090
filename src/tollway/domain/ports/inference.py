"""What the inference services read from storage: API keys, the routing catalog, stored responses."""

from __future__ import annotations

from typing import Protocol

from tollway.domain.tenancy import KeyRecord


class KeyLookup(Protocol):
    async def find_active(self, digest: bytes) -> KeyRecord | None: ...
