"""What authentication and the inference services read from storage: API keys and the bootstrap records, the
routing catalog, stored responses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from tollway.domain.catalog import ModelRow, Provider
from tollway.domain.stored_responses import Owner, StoredResponse
from tollway.domain.tenancy import KeyRecord


class KeyLookup(Protocol):
    async def find_active(self, digest: bytes) -> KeyRecord | None: ...

    async def find_active_by_id(self, key_id: str) -> KeyRecord | None:
        """The same conditions as ``find_active`` (live key, platform and end user), by the key's id."""
        ...


class SystemRecords(Protocol):
    """Process-wide records kept in the database: the operator-key digest and the secret-key fingerprint."""

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...

    async def insert_meta_if_absent(self, key: str, value: str) -> str:
        """Insert unless present; returns the value stored (ours, or the one another instance stored first)."""
        ...


class SealedRow(Protocol):
    @property
    def model(self) -> ModelRow: ...
    @property
    def provider(self) -> Provider: ...
    @property
    def config_id(self) -> str: ...
    @property
    def sealed_key(self) -> bytes: ...


class CatalogSource(Protocol):
    async def usable_rows(self, platform_id: str) -> Sequence[SealedRow]: ...
    async def platform_settings(self, platform_id: str) -> dict[str, Any] | None: ...


class ResponseRepository(Protocol):
    async def save(self, owner: Owner, input_items: list[dict[str, Any]], body: dict[str, Any]) -> None: ...

    async def get(self, owner: Owner, response_id: str) -> StoredResponse | None:
        """The owner's unexpired response, or None (unknown, expired, or another owner's)."""
        ...

    async def delete(self, owner: Owner, response_id: str) -> bool: ...
