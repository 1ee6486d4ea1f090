"""Agent threads (SPEC §16.4) on SQLAlchemy Core: the ``threads`` rows, their lease, and their stored responses.

Serialisation across instances is the database's: a claim is one conditional UPDATE (the lease is free or expired)
or, for a new thread, one INSERT that the unique (platform, owner, thread id) constraint lets only one instance
win. Responses of a thread are ordinary stored responses (``storage/sql/responses.py``) linked by ``thread_key`` and
numbered by ``thread_seq``; they expire with ``TOLLWAY_RESPONSE_RETENTION_DAYS`` like every stored response.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.domain.clock import utcnow
from tollway.domain.ids import new_id
from tollway.domain.stored_responses import Owner, StoredResponse
from tollway.domain.threads import Deletion, Thread, ThreadLease
from tollway.storage.sql.responses import STORED_COLUMNS, response_row, stored_response
from tollway.storage.sql.tables import stored_responses, threads

_t = threads.c
_r = stored_responses.c


def _owner_key(owner: Owner) -> str:
    return owner.end_user_id or ""  # '' for platform keys: one unique constraint covers both kinds of owner


def _owned(owner: Owner, thread_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (_t.platform_id == owner.platform_id, _t.owner_key == _owner_key(owner), _t.thread_id == thread_id)


def _free(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(_t.busy_until.is_(None), _t.busy_until <= now)


def _live_responses(now: datetime) -> sa.ScalarSelect[Any]:
    return (
        sa.select(sa.func.count())
        .select_from(stored_responses)
        .where(_r.thread_key == _t.id, _r.expires_at > now)
        .scalar_subquery()
    )


def _thread(row: sa.Row[Any]) -> Thread:
    return Thread(
        id=row.thread_id,
        end_user_id=row.end_user_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        response_count=int(row.response_count),
        metadata=dict(row.metadata or {}),
    )


class ThreadStore:
    def __init__(self, engine: AsyncEngine, retention_days: int) -> None:
        self._engine = engine
        self._retention = timedelta(days=retention_days)

    # -- the lease ---------------------------------------------------------------------------------------------

    async def claim(
        self, owner: Owner, thread_id: str, holder: str, metadata: dict[str, str], lease_until: datetime
    ) -> ThreadLease | None:
        now = utcnow()
        taken = (
            sa.update(threads)
            .where(*_owned(owner, thread_id), _free(now))
            .values(busy_until=lease_until, busy_request_id=holder)
            .returning(_t.id)
        )
        async with self._engine.begin() as conn:
            key = (await conn.execute(taken)).scalar_one_or_none()
        if key is not None:
            return ThreadLease(key, thread_id, holder)
        key = new_id()
        row = {
            "id": key,
            "platform_id": owner.platform_id,
            "end_user_id": owner.end_user_id,
            "owner_key": _owner_key(owner),
            "thread_id": thread_id,
            "metadata": metadata,
            "turns": 0,
            "created_at": now,
            "updated_at": now,
            "busy_until": lease_until,
            "busy_request_id": holder,
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(sa.insert(threads).values(row))
        except IntegrityError:
            return None  # the thread exists and is held (or another request created it a moment ago)
        return ThreadLease(key, thread_id, holder)

    async def renew(self, lease: ThreadLease, lease_until: datetime) -> bool:
        held = sa.update(threads).where(_t.id == lease.key, _t.busy_request_id == lease.holder)
        async with self._engine.begin() as conn:
            renewed = await conn.execute(held.values(busy_until=lease_until))
        return bool(renewed.rowcount)

    async def release(self, lease: ThreadLease) -> None:
        held = (_t.id == lease.key, _t.busy_request_id == lease.holder)
        async with self._engine.begin() as conn:
            unused = await conn.execute(sa.delete(threads).where(*held, _t.turns == 0))
            if not unused.rowcount:
                await conn.execute(sa.update(threads).where(*held).values(busy_until=None, busy_request_id=None))

    # -- turns -------------------------------------------------------------------------------------------------

    async def turns(self, key: str, before_seq: int | None = None) -> list[StoredResponse]:
        async with self._engine.connect() as conn:
            return await _turns(conn, key, utcnow(), before_seq)

    async def append(
        self, lease: ThreadLease, owner: Owner, input_items: list[dict[str, Any]], body: dict[str, Any]
    ) -> None:
        now = utcnow()
        numbered = (
            sa.update(threads).where(_t.id == lease.key).values(turns=_t.turns + 1, updated_at=now).returning(_t.turns)
        )
        async with self._engine.begin() as conn:
            seq = (await conn.execute(numbered)).scalar_one_or_none()
            if seq is None:
                raise LookupError(f"thread {lease.thread_id} no longer exists")
            row = response_row(owner, input_items, body, now, self._retention)
            await conn.execute(sa.insert(stored_responses).values({**row, "thread_key": lease.key, "thread_seq": seq}))

    # -- reads -------------------------------------------------------------------------------------------------

    async def get(self, owner: Owner, thread_id: str) -> Thread | None:
        now = utcnow()
        query = sa.select(threads, _live_responses(now).label("response_count")).where(*_owned(owner, thread_id))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _thread(row)

    async def turns_of(self, owner: Owner, thread_id: str) -> list[StoredResponse] | None:
        async with self._engine.connect() as conn:
            key = (await conn.execute(sa.select(_t.id).where(*_owned(owner, thread_id)))).scalar_one_or_none()
            if key is None:
                return None
            return await _turns(conn, key, utcnow(), None)

    async def list(
        self, platform_id: str, end_user_id: str | None, *, every_owner: bool, offset: int, limit: int
    ) -> tuple[list[Thread], int]:
        now = utcnow()
        where: list[sa.ColumnElement[bool]] = [_t.platform_id == platform_id]
        if not every_owner:
            where.append(_t.owner_key == (end_user_id or ""))
        elif end_user_id is not None:
            where.append(_t.end_user_id == end_user_id)
        count = sa.select(sa.func.count()).select_from(threads).where(*where)
        query = (
            sa.select(threads, _live_responses(now).label("response_count"))
            .where(*where)
            .order_by(_t.created_at.desc(), _t.thread_id.desc())
            .offset(offset)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            total = int((await conn.execute(count)).scalar_one())
            rows = (await conn.execute(query)).all() if offset < total else []
        return [_thread(row) for row in rows], total

    # -- deletion ----------------------------------------------------------------------------------------------

    async def delete(self, owner: Owner, thread_id: str) -> Deletion:
        """One transaction: take the thread if no request holds it, then delete its responses and itself."""
        now = utcnow()
        taken = (
            sa.update(threads)
            .where(*_owned(owner, thread_id), _free(now))
            .values(busy_until=now, busy_request_id="deleting")
            .returning(_t.id)
        )
        async with self._engine.begin() as conn:
            key = (await conn.execute(taken)).scalar_one_or_none()
            if key is None:
                held = (await conn.execute(sa.select(_t.id).where(*_owned(owner, thread_id)))).first()
                return Deletion.MISSING if held is None else Deletion.BUSY
            await conn.execute(sa.delete(stored_responses).where(_r.thread_key == key))
            await conn.execute(sa.delete(threads).where(_t.id == key))
        return Deletion.DELETED


async def _turns(conn: AsyncConnection, key: str, now: datetime, before_seq: int | None) -> list[StoredResponse]:
    query = sa.select(*STORED_COLUMNS).where(_r.thread_key == key, _r.expires_at > now)
    if before_seq is not None:
        query = query.where(_r.thread_seq < before_seq)
    rows = (await conn.execute(query.order_by(_r.thread_seq))).all()
    return [stored_response(row) for row in rows]


async def prune_threads(engine: AsyncEngine, now: datetime, retention_days: int) -> int:
    """The hourly job: deletes the threads whose last response is past the retention (so every response of theirs
    has expired) and that no request holds, with their expired responses. Returns how many were deleted."""
    stale = (_t.updated_at <= now - timedelta(days=retention_days), _free(now))
    emptied = ~sa.exists().where(_r.thread_key == _t.id)  # a response appended meanwhile keeps its thread
    async with engine.begin() as conn:
        expired = (_r.thread_key.in_(sa.select(_t.id).where(*stale)), _r.expires_at <= now)
        await conn.execute(sa.delete(stored_responses).where(*expired))
        result = await conn.execute(sa.delete(threads).where(*stale, emptied))
    return result.rowcount
