"""Idempotency records (SPEC §9.7): one row per (scope, method, path, key) claimed before the operation runs and
completed in the operation's own transaction, so a key's operation commits at most once (§9.6 invariant 7).

A claim is ``in_progress`` with a short lease; completing it is a conditional UPDATE on the claim's id that must hit
exactly one row, so an operation whose claim was taken over (lease expired, record pruned) rolls back instead of
running twice. Completed records live 24 h from first use, then the key starts afresh.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.domain.clock import as_utc
from tollway.domain.idempotency import Claim, Existing, IdempotencyIdentity, StoredResponse
from tollway.domain.ids import new_id
from tollway.storage.sql.tables import idempotency_keys

_IN_PROGRESS: Final = "in_progress"
_DONE: Final = "done"
_CLAIM_ATTEMPTS: Final = 5


class IdempotencyStore:
    """The ``IdempotencyClaims`` port: each method is a transaction of its own."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim(
        self, ident: IdempotencyIdentity, fingerprint: str, now: datetime, lease: timedelta
    ) -> Claim | Existing:
        """Claims the key, or reports who has it. An expired record (a completed one past its retention, or a claim
        past its lease whose request died) is deleted first and the key claimed anew."""
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                found = await self._claim_once(ident, fingerprint, now, lease)
            except sa.exc.IntegrityError:  # a concurrent request inserted the same key first: look again
                continue
            if found is not None:
                return found
        raise RuntimeError("could not claim an idempotency key")  # pragma: no cover - needs 5 lost races in a row

    async def _claim_once(
        self, ident: IdempotencyIdentity, fingerprint: str, now: datetime, lease: timedelta
    ) -> Claim | Existing | None:
        where = (
            idempotency_keys.c.scope == ident.scope,
            idempotency_keys.c.method == ident.method,
            idempotency_keys.c.path == ident.path,
            idempotency_keys.c.key == ident.key,
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(sa.select(idempotency_keys).where(*where))).first()
            if row is not None and as_utc(row.expires_at) > now:
                done = row.status == _DONE
                response = StoredResponse(int(row.response_status), bytes(row.response_body)) if done else None
                return Existing(row.fingerprint, response)
            if row is not None:
                expired = sa.delete(idempotency_keys).where(
                    idempotency_keys.c.id == row.id, idempotency_keys.c.expires_at <= now
                )
                if (await conn.execute(expired)).rowcount != 1:
                    return None  # it changed meanwhile (completed by its owner): look again
            claim = Claim(new_id(), now)
            await conn.execute(
                sa.insert(idempotency_keys).values(
                    id=claim.id,
                    scope=ident.scope,
                    method=ident.method,
                    path=ident.path,
                    key=ident.key,
                    fingerprint=fingerprint,
                    status=_IN_PROGRESS,
                    response_status=None,
                    response_body=None,
                    created_at=now,
                    expires_at=now + lease,
                )
            )
            return claim

    async def store(self, claim: Claim, response: StoredResponse, expires_at: datetime) -> bool:
        """Completes a claim in a transaction of its own (an outcome without ledger rows, such as a 402)."""
        async with self._engine.begin() as conn:
            return await complete(conn, claim, response, expires_at)

    async def release(self, claim: Claim) -> None:
        """Gives a claim up (the outcome is not stored): the key is usable again at once."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.delete(idempotency_keys).where(
                    idempotency_keys.c.id == claim.id, idempotency_keys.c.status == _IN_PROGRESS
                )
            )


async def complete(conn: AsyncConnection, claim: Claim, response: StoredResponse, expires_at: datetime) -> bool:
    """Inside the operation's transaction: marks the claim done with its response. False when the claim is gone
    (taken over or pruned); the caller must then roll back."""
    result = await conn.execute(
        sa.update(idempotency_keys)
        .where(idempotency_keys.c.id == claim.id, idempotency_keys.c.status == _IN_PROGRESS)
        .values(status=_DONE, response_status=response.status, response_body=response.body, expires_at=expires_at)
    )
    return result.rowcount == 1


class SqlIdempotencyCompletion:
    """The ``IdempotencyCompletion`` port on the connection of a unit of work."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def complete(self, claim: Claim, response: StoredResponse, expires_at: datetime) -> bool:
        return await complete(self._conn, claim, response, expires_at)


async def prune_idempotency(engine: AsyncEngine, now: datetime) -> int:
    """The hourly job: deletes every record past its expiry (completed ones 24 h after first use, abandoned claims
    after their lease). Returns how many were deleted."""
    async with engine.begin() as conn:
        result = await conn.execute(sa.delete(idempotency_keys).where(idempotency_keys.c.expires_at <= now))
    return result.rowcount
