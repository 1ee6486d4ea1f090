"""The console's storage (SPEC §17.1): its sessions, and GROUP BY reads of the usage log by UTC day for its charts.

The aggregates use the ``(platform_id, created_at)`` index of ``usage_logs``; the day is computed in SQL on both
stores (SQLite keeps UTC timestamps as ``YYYY-MM-DD HH:MM:SS…`` text; PostgreSQL converts to UTC first)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.domain.clock import as_utc
from tollway.domain.console import MAX_PENDING_SECRETS, ModelDay, Spender, SpenderDay, StoredSession
from tollway.domain.keys import KeyKind
from tollway.storage.sql.db import reader
from tollway.storage.sql.tables import console_pending_secrets, console_sessions, end_users, usage_logs

_pending = console_pending_secrets.c


class SqlConsoleSessions:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    async def create(self, session: StoredSession) -> None:
        values = {
            "id_hash": session.id_hash,
            "kind": session.kind.value,
            "key_id": session.key_id,
            "operator_check": session.operator_check,
            "platform_id": session.platform_id,
            "end_user_id": session.end_user_id,
            "csrf_token": session.csrf_token,
            "created_at": session.created_at,
            "last_seen_at": session.last_seen_at,
        }
        async with self._engine.begin() as conn:
            await conn.execute(sa.insert(console_sessions).values(values))

    async def find(self, id_hash: bytes) -> StoredSession | None:
        query = sa.select(console_sessions).where(console_sessions.c.id_hash == id_hash)
        async with self._reader.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return StoredSession(
            id_hash=row.id_hash,
            kind=KeyKind(row.kind),
            key_id=row.key_id,
            operator_check=row.operator_check,
            platform_id=row.platform_id,
            end_user_id=row.end_user_id,
            csrf_token=row.csrf_token,
            created_at=as_utc(row.created_at),
            last_seen_at=as_utc(row.last_seen_at),
        )

    async def touch(self, id_hash: bytes, now: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(console_sessions).where(console_sessions.c.id_hash == id_hash).values(last_seen_at=now)
            )

    async def delete(self, id_hash: bytes) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(console_pending_secrets).where(_pending.id_hash == id_hash))
            await conn.execute(sa.delete(console_sessions).where(console_sessions.c.id_hash == id_hash))

    async def hold_shown_once(
        self, id_hash: bytes, display_id: str, sealed: bytes, expires_at: datetime, now: datetime
    ) -> None:
        mine = _pending.id_hash == id_hash
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(console_pending_secrets).where(mine, _pending.expires_at <= now))
            kept = sa.select(_pending.display_id).where(mine).order_by(_pending.expires_at.desc())
            room = kept.limit(MAX_PENDING_SECRETS - 1)
            await conn.execute(sa.delete(console_pending_secrets).where(mine, _pending.display_id.not_in(room)))
            values = {"id_hash": id_hash, "display_id": display_id, "sealed": sealed, "expires_at": expires_at}
            await conn.execute(sa.insert(console_pending_secrets).values(values))

    async def take_shown_once(self, id_hash: bytes, display_id: str, now: datetime) -> bytes | None:
        # Read, then delete only if it is still there: of two concurrent takers, one deletes it (rowcount 1) and the
        # other finds it gone (on PostgreSQL the second DELETE waits for the first and re-checks its condition).
        held = sa.and_(_pending.id_hash == id_hash, _pending.display_id == display_id)
        async with self._engine.begin() as conn:
            row = (await conn.execute(sa.select(_pending.sealed, _pending.expires_at).where(held))).first()
            if row is None:
                return None
            taken = await conn.execute(sa.delete(console_pending_secrets).where(held))
        return bytes(row.sealed) if taken.rowcount == 1 and as_utc(row.expires_at) > now else None

    async def prune(self, idle_before: datetime, now: datetime) -> int:
        idle = sa.select(console_sessions.c.id_hash).where(console_sessions.c.last_seen_at < idle_before)
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.delete(console_pending_secrets).where(sa.or_(_pending.expires_at <= now, _pending.id_hash.in_(idle)))
            )
            result = await conn.execute(
                sa.delete(console_sessions).where(console_sessions.c.last_seen_at < idle_before)
            )
        return int(result.rowcount or 0)


class SqlUsageAggregates:
    def __init__(self, engine: AsyncEngine) -> None:
        self._reader = reader(engine)
        self._day: Any = (
            sa.func.substr(sa.cast(usage_logs.c.created_at, sa.String), 1, 10)
            if engine.dialect.name == "sqlite"
            else sa.func.to_char(sa.func.timezone("UTC", usage_logs.c.created_at), "YYYY-MM-DD")
        )

    def _window(self, platform_id: str, since: datetime, until: datetime) -> list[sa.ColumnElement[bool]]:
        return [
            usage_logs.c.platform_id == platform_id,
            usage_logs.c.created_at >= since,
            usage_logs.c.created_at < until,
        ]

    async def by_model_day(self, platform_id: str, since: datetime, until: datetime) -> Sequence[ModelDay]:
        day = self._day.label("day")
        errors = sa.func.sum(sa.case((usage_logs.c.status == "error", 1), else_=0))
        query = (
            sa.select(
                day,
                usage_logs.c.model,
                sa.func.count().label("requests"),
                errors.label("errors"),
                sa.func.sum(usage_logs.c.cost_nanos).label("cost"),
                sa.func.sum(usage_logs.c.latency_ms).label("latency"),
            )
            .where(*self._window(platform_id, since, until))
            .group_by(day, usage_logs.c.model)
            .order_by(day, usage_logs.c.model)
        )
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ModelDay(str(r.day), r.model, int(r.requests), int(r.errors or 0), int(r.cost or 0), int(r.latency or 0))
            for r in rows
        ]

    async def top_spenders(self, platform_id: str, since: datetime, until: datetime, limit: int) -> Sequence[Spender]:
        cost = sa.func.sum(usage_logs.c.cost_nanos).label("cost")
        totals = (
            sa.select(usage_logs.c.end_user_id, cost)
            .where(*self._window(platform_id, since, until), usage_logs.c.end_user_id.is_not(None))
            .group_by(usage_logs.c.end_user_id)
            .order_by(cost.desc(), usage_logs.c.end_user_id)
            .limit(limit)
            .subquery()
        )
        query = (
            sa.select(totals.c.end_user_id, totals.c.cost, end_users.c.external_id)
            .select_from(
                totals.outerjoin(
                    end_users,
                    sa.and_(end_users.c.id == totals.c.end_user_id, end_users.c.platform_id == platform_id),
                )
            )
            .order_by(totals.c.cost.desc(), totals.c.end_user_id)
        )
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [Spender(r.end_user_id, r.external_id or r.end_user_id, int(r.cost or 0)) for r in rows]

    async def by_spender_day(
        self, platform_id: str, since: datetime, until: datetime, end_user_ids: Sequence[str]
    ) -> Sequence[SpenderDay]:
        day = self._day.label("day")
        who: sa.ColumnElement[bool] = usage_logs.c.end_user_id.is_(None)
        if end_user_ids:
            who = sa.or_(who, usage_logs.c.end_user_id.in_(list(end_user_ids)))
        query = (
            sa.select(day, usage_logs.c.end_user_id, sa.func.sum(usage_logs.c.cost_nanos).label("cost"))
            .where(*self._window(platform_id, since, until), who)
            .group_by(day, usage_logs.c.end_user_id)
        )
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [SpenderDay(str(r.day), r.end_user_id, int(r.cost or 0)) for r in rows]
