"""What authentication and the inference services read from storage: API keys and the bootstrap records, the
routing catalog, stored responses and agent threads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from tollway.domain.catalog import ModelRow, Provider
from tollway.domain.stored_responses import Owner, StoredResponse
from tollway.domain.tenancy import KeyRecord
from tollway.domain.threads import Deletion, Thread, ThreadLease


class KeyLookup(Protocol):
    async def find_active(self, digest: bytes) -> KeyRecord | None: ...

    async def find_active_many(self, digests: list[bytes]) -> dict[bytes, KeyRecord]:
        """``find_active`` of several keys in one query (by digest; a key that is not live is absent)."""
        ...

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


class ThreadRepository(Protocol):
    """Agent threads (SPEC §16.4). Every method is scoped by the owner; another owner's thread id reads as missing
    (and, on ``claim``, as a new thread of the caller's own)."""

    async def claim(
        self, owner: Owner, thread_id: str, holder: str, metadata: dict[str, str], lease_until: datetime
    ) -> ThreadLease | None:
        """Create the thread if new, and take it for ``holder`` until ``lease_until`` unless another request holds
        an unexpired lease (then None). Exactly one of concurrent claims wins, across instances."""
        ...

    async def renew(self, lease: ThreadLease, lease_until: datetime) -> bool:
        """Extend the lease to ``lease_until`` if ``lease.holder`` still holds the thread (False: it does not)."""
        ...

    async def release(self, lease: ThreadLease) -> None:
        """Give the thread back; a thread that never got a response is removed (it was never really used)."""
        ...

    async def turns(self, key: str, before_seq: int | None = None) -> list[StoredResponse]:
        """The thread's unexpired responses in order (those before ``before_seq`` when given)."""
        ...

    async def append(
        self, lease: ThreadLease, owner: Owner, input_items: list[dict[str, Any]], body: dict[str, Any]
    ) -> None:
        """Store ``body`` as the thread's next response, with the input of its own request."""
        ...

    async def get(self, owner: Owner, thread_id: str) -> Thread | None: ...

    async def turns_of(self, owner: Owner, thread_id: str) -> list[StoredResponse] | None:
        """The owner's thread's unexpired responses in order, or None when there is no such thread."""
        ...

    async def list(
        self, platform_id: str, end_user_id: str | None, *, every_owner: bool, offset: int, limit: int
    ) -> tuple[list[Thread], int]:
        """One page of threads, newest first (SPEC §1.2), and the total. ``every_owner``: the platform's
        threads of every owner (then ``end_user_id``, when given, filters); else exactly the owner's."""
        ...

    async def delete(self, owner: Owner, thread_id: str) -> Deletion:
        """Delete the thread and its stored responses, unless a request still holds it."""
        ...
