"""What the console's use cases read and write (SPEC §17.1): its sessions and the usage-log aggregates of its charts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from tollway.domain.console import ModelDay, Spender, SpenderDay, StoredSession


class ConsoleSessionStore(Protocol):
    async def create(self, session: StoredSession) -> None: ...

    async def find(self, id_hash: bytes) -> StoredSession | None: ...

    async def touch(self, id_hash: bytes, now: datetime) -> None: ...

    async def delete(self, id_hash: bytes) -> None: ...

    async def hold_shown_once(
        self, id_hash: bytes, display_id: str, sealed: bytes, expires_at: datetime, now: datetime
    ) -> None:
        """Keeps a sealed secret for the session's page ``display_id`` until ``expires_at``, beside the others it
        holds (at most ``MAX_PENDING_SECRETS``: the one expiring first makes room); drops its expired ones."""
        ...

    async def take_shown_once(self, id_hash: bytes, display_id: str, now: datetime) -> bytes | None:
        """The sealed secret held for ``display_id`` if it has not expired, removed in the same step: one caller
        gets it, once."""
        ...

    async def prune(self, idle_before: datetime, now: datetime) -> int:
        """Deletes the sessions last seen before ``idle_before`` (their pending secrets with them) and every pending
        secret expired at ``now``; returns how many sessions."""
        ...


class UsageAggregates(Protocol):
    """GROUP BY reads of one platform's usage log over ``[since, until)``, by UTC day."""

    async def by_model_day(self, platform_id: str, since: datetime, until: datetime) -> Sequence[ModelDay]: ...

    async def top_spenders(self, platform_id: str, since: datetime, until: datetime, limit: int) -> Sequence[Spender]:
        """The end users with the largest raw cost, largest first (live or deleted; labelled by external_id)."""
        ...

    async def by_spender_day(
        self, platform_id: str, since: datetime, until: datetime, end_user_ids: Sequence[str]
    ) -> Sequence[SpenderDay]:
        """Daily raw cost of the named end users and of the platform's own keys (``end_user_id`` None)."""
        ...
