"""Issuing, listing and revoking a platform's API keys (SPEC §2.2, §5.2). Only digests are stored; lookups for
authentication live in ``keystore``. Callers invalidate the authentication cache after every write here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.domain.clock import utcnow
from tollway.domain.ids import new_id
from tollway.domain.records import Record
from tollway.storage.sql.paging import fetch_page
from tollway.storage.sql.tables import api_keys, platforms

KEY_COLUMNS = (
    api_keys.c.id,
    api_keys.c.platform_id,
    api_keys.c.end_user_id,
    api_keys.c.type,
    api_keys.c.name,
    api_keys.c.key_prefix,
    api_keys.c.scopes,
    api_keys.c.is_active,
    api_keys.c.expires_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
    api_keys.c.created_at,
)


async def insert_key(conn: AsyncConnection, values: Mapping[str, Any]) -> dict[str, Any]:
    """Inserts one key row inside the caller's transaction; returns the row without its digest."""
    row = {
        **values,
        "id": new_id(),
        "is_active": True,
        "last_used_at": None,
        "revoked_at": None,
        "created_at": utcnow(),
    }
    await conn.execute(sa.insert(api_keys).values(row))
    row.pop("key_hash", None)
    return row


def _live_platform(platform_id: str) -> sa.Select[Any]:
    return sa.select(platforms.c.id).where(platforms.c.id == platform_id, platforms.c.deleted_at.is_(None))


class ApiKeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, values: Mapping[str, Any]) -> Record | None:
        """A new key for a live platform; None when the platform is unknown or deleted."""
        async with self._engine.begin() as conn:
            if (await conn.execute(_live_platform(values["platform_id"]))).first() is None:
                return None
            return await insert_key(conn, values)

    async def list_keys(
        self, platform_id: str, key_type: str, end_user_id: str | None, offset: int, limit: int
    ) -> tuple[list[Record], int]:
        query = sa.select(*KEY_COLUMNS).where(api_keys.c.platform_id == platform_id, api_keys.c.type == key_type)
        if end_user_id is not None:
            query = query.where(api_keys.c.end_user_id == end_user_id)
        order = [api_keys.c.created_at.desc(), api_keys.c.id.desc()]
        async with self._engine.connect() as conn:
            return await fetch_page(conn, query, order, offset, limit)

    async def revoke(self, platform_id: str, key_id: str, now: datetime) -> bool:
        """Permanent; revoking a revoked key keeps its first ``revoked_at`` and still succeeds."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.platform_id == platform_id)
                .values(is_active=False, revoked_at=sa.func.coalesce(api_keys.c.revoked_at, now))
            )
        return result.rowcount > 0
