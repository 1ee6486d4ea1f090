"""MCP apps, end users' connections and pending OAuth states (SPEC §16.1, §16.2); every query is scoped by the owning
platform. The refresh lease is a conditional UPDATE: on both stores exactly one of concurrent claimers sees its row
count be 1 (PostgreSQL re-checks the WHERE after a concurrent update; SQLite serialises writers), so one refresh runs
per token across instances."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.domain.conflicts import Duplicate
from tollway.domain.mcp import ConnectionStatus
from tollway.domain.records import Record
from tollway.storage.sql.db import reader
from tollway.storage.sql.paging import fetch_page
from tollway.storage.sql.tables import end_users, mcp_apps, mcp_connections, mcp_oauth_states

_A = mcp_apps
_C = mcp_connections
_S = mcp_oauth_states


def _app(platform_id: str, app_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(_A.c.id == app_id, _A.c.platform_id == platform_id)


class McpAppStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    async def create(self, values: Mapping[str, Any]) -> Record:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(sa.insert(_A).values(dict(values)))
        except sa.exc.IntegrityError:
            raise Duplicate from None
        return dict(values)

    async def list_apps(self, platform_id: str, offset: int, limit: int) -> tuple[list[Record], int]:
        query = sa.select(_A).where(_A.c.platform_id == platform_id)
        async with self._reader.connect() as conn:
            return await fetch_page(conn, query, [_A.c.created_at.desc(), _A.c.id.desc()], offset, limit)

    async def get(self, platform_id: str, app_id: str) -> Record | None:
        async with self._reader.connect() as conn:
            row = (await conn.execute(sa.select(_A).where(_app(platform_id, app_id)))).first()
        return None if row is None else dict(row._mapping)

    async def by_slug(self, platform_id: str, slug: str) -> Record | None:
        query = sa.select(_A).where(_A.c.platform_id == platform_id, _A.c.slug == slug)
        async with self._reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else dict(row._mapping)

    async def active_apps(self, platform_id: str) -> list[Record]:
        query = sa.select(_A).where(_A.c.platform_id == platform_id, _A.c.is_active.is_(True)).order_by(_A.c.slug)
        async with self._reader.connect() as conn:
            return [dict(row._mapping) for row in (await conn.execute(query)).all()]

    async def update(self, platform_id: str, app_id: str, values: Mapping[str, Any], now: datetime) -> Record | None:
        try:
            async with self._engine.begin() as conn:
                row = (
                    await conn.execute(
                        sa.update(_A)
                        .where(_app(platform_id, app_id))
                        .values({**values, "updated_at": now})
                        .returning(*_A.c)
                    )
                ).first()
        except sa.exc.IntegrityError:
            raise Duplicate from None
        return None if row is None else dict(row._mapping)

    async def delete(self, platform_id: str, app_id: str) -> bool:
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(_S).where(_S.c.app_id == app_id, _S.c.platform_id == platform_id))
            await conn.execute(sa.delete(_C).where(_C.c.app_id == app_id, _C.c.platform_id == platform_id))
            done = await conn.execute(sa.delete(_A).where(_app(platform_id, app_id)))
        return bool(done.rowcount)

    async def connections(
        self, platform_id: str, end_user_id: str | None, offset: int, limit: int
    ) -> tuple[list[Record], int]:
        query = (
            sa.select(
                _C.c.id, _C.c.end_user_id, _C.c.status, _C.c.scopes, _C.c.connected_at, _A.c.slug.label("app_slug")
            )
            .select_from(_C.join(_A, _A.c.id == _C.c.app_id).join(end_users, end_users.c.id == _C.c.end_user_id))
            .where(_C.c.platform_id == platform_id, _A.c.platform_id == platform_id, end_users.c.deleted_at.is_(None))
        )
        if end_user_id is not None:
            query = query.where(_C.c.end_user_id == end_user_id)
        async with self._reader.connect() as conn:
            return await fetch_page(conn, query, [_C.c.connected_at.desc(), _C.c.id.desc()], offset, limit)


class McpConnectionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    async def save_state(self, values: Mapping[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(sa.insert(_S).values(dict(values)))

    async def take_state(self, digest: str) -> Record | None:
        async with self._engine.begin() as conn:
            row = (await conn.execute(sa.delete(_S).where(_S.c.state_digest == digest).returning(*_S.c))).first()
        return None if row is None else dict(row._mapping)

    async def store(self, values: Mapping[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.delete(_C).where(_C.c.app_id == values["app_id"], _C.c.end_user_id == values["end_user_id"])
            )
            await conn.execute(sa.insert(_C).values(dict(values)))

    async def get(self, platform_id: str, app_id: str, end_user_id: str) -> Record | None:
        query = sa.select(_C).where(
            _C.c.platform_id == platform_id, _C.c.app_id == app_id, _C.c.end_user_id == end_user_id
        )
        async with self._reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else dict(row._mapping)

    async def of_end_user(self, platform_id: str, end_user_id: str) -> list[Record]:
        query = sa.select(_C).where(_C.c.platform_id == platform_id, _C.c.end_user_id == end_user_id)
        async with self._reader.connect() as conn:
            return [dict(row._mapping) for row in (await conn.execute(query)).all()]

    async def claim_refresh(self, connection_id: str, version: int, now: datetime, lease_until: datetime) -> bool:
        async with self._engine.begin() as conn:
            done = await conn.execute(
                sa.update(_C)
                .where(
                    _C.c.id == connection_id,
                    _C.c.version == version,
                    _C.c.status == ConnectionStatus.CONNECTED.value,
                    sa.or_(_C.c.refresh_lease_until.is_(None), _C.c.refresh_lease_until < now),
                )
                .values(refresh_lease_until=lease_until)
            )
        return done.rowcount == 1

    async def finish_refresh(self, connection_id: str, version: int, values: Mapping[str, Any], now: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(_C)
                .where(_C.c.id == connection_id, _C.c.version == version)
                .values({**values, "version": _C.c.version + 1, "refresh_lease_until": None, "updated_at": now})
            )

    async def expire(self, connection_id: str, version: int, now: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(_C)
                .where(_C.c.id == connection_id, _C.c.version == version)
                .values(
                    status=ConnectionStatus.EXPIRED.value,
                    version=_C.c.version + 1,
                    refresh_lease_until=None,
                    updated_at=now,
                )
            )

    async def release_refresh(self, connection_id: str, lease_until: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(_C)
                .where(_C.c.id == connection_id, _C.c.refresh_lease_until == lease_until)
                .values(refresh_lease_until=None)
            )

    async def delete(self, platform_id: str, app_id: str, end_user_id: str) -> Record | None:
        where = sa.and_(_C.c.platform_id == platform_id, _C.c.app_id == app_id, _C.c.end_user_id == end_user_id)
        async with self._engine.begin() as conn:
            row = (await conn.execute(sa.delete(_C).where(where).returning(*_C.c))).first()
        return None if row is None else dict(row._mapping)


async def prune_oauth_states(engine: AsyncEngine, now: datetime) -> int:
    """The hourly job: deletes pending OAuth states past their 10 minutes (never used). Returns how many."""
    async with engine.begin() as conn:
        result = await conn.execute(sa.delete(_S).where(_S.c.expires_at <= now))
    return result.rowcount
