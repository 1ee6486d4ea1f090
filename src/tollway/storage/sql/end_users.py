"""End users of a platform (SPEC §5.4): creation idempotent by ``external_id`` (with the platform's default budget
and a key, all or nothing), reads, updates, soft deletion and extra keys. A deleted end user is invisible here; its
keys are revoked, its budget deactivated, and its ledger rows and usage logs stay in the database."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.domain.budget_changes import BudgetRow, opened
from tollway.domain.budgets import BudgetSpec
from tollway.domain.end_users import EndUserCreation
from tollway.domain.ids import new_id
from tollway.domain.platform_settings import PlatformSettings
from tollway.domain.records import Record
from tollway.storage.sql.api_keys import insert_key
from tollway.storage.sql.budgets import lock_and_reset, open_budget
from tollway.storage.sql.db import reader
from tollway.storage.sql.paging import fetch_page
from tollway.storage.sql.tables import api_keys, budgets, end_users, platforms

# Concurrent creates with one external_id: every loser of the unique index retries and then finds the winner.
_CREATE_ATTEMPTS: Final = 5


def _live(platform_id: str, end_user_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        end_users.c.id == end_user_id, end_users.c.platform_id == platform_id, end_users.c.deleted_at.is_(None)
    )


class EndUserStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    async def create_or_get(
        self, platform_id: str, values: Mapping[str, Any], key_values: Mapping[str, Any], now: datetime
    ) -> EndUserCreation | None:
        """``values`` = external_id, display_name, metadata. None when the platform is unknown or deleted."""
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                return await self._create_once(platform_id, values, key_values, now)
            except sa.exc.IntegrityError:
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _create_once(
        self, platform_id: str, values: Mapping[str, Any], key_values: Mapping[str, Any], now: datetime
    ) -> EndUserCreation | None:
        async with self._engine.begin() as conn:
            live_platform = sa.select(platforms.c.settings).where(
                platforms.c.id == platform_id, platforms.c.deleted_at.is_(None)
            )
            platform = (await conn.execute(live_platform)).first()
            if platform is None:
                return None
            existing = (
                await conn.execute(
                    sa.select(end_users).where(
                        end_users.c.platform_id == platform_id,
                        end_users.c.external_id == values["external_id"],
                        end_users.c.deleted_at.is_(None),
                    )
                )
            ).first()
            if existing is not None:
                user = dict(existing._mapping)
                key = await _insert_end_user_key(conn, platform_id, user["id"], key_values)
                budget = await lock_and_reset(conn, platform_id, user["id"], now)
                return EndUserCreation(user, key, budget, created=False)
            user = {
                "id": new_id(),
                "platform_id": platform_id,
                "external_id": values["external_id"],
                "display_name": values.get("display_name"),
                "metadata": dict(values.get("metadata") or {}),
                "is_active": True,
                "deleted_at": None,
                "created_at": now,
                "updated_at": now,
            }
            await conn.execute(sa.insert(end_users).values(user))
            default = PlatformSettings.from_stored(platform.settings).default_budget
            new_budget: BudgetRow | None = None
            if default is not None:
                spec = BudgetSpec(max_nanos=default.max_nanos, period=default.period)
                opening = opened(platform_id, user["id"], spec, now)
                await open_budget(conn, opening)
                new_budget = opening.budget
            key = await _insert_end_user_key(conn, platform_id, user["id"], key_values)
            return EndUserCreation(user, key, new_budget, created=True)

    async def get(self, platform_id: str, end_user_id: str) -> Record | None:
        async with self._reader.connect() as conn:
            row = (await conn.execute(sa.select(end_users).where(_live(platform_id, end_user_id)))).first()
        return None if row is None else dict(row._mapping)

    async def list_end_users(
        self, platform_id: str, external_id: str | None, offset: int, limit: int
    ) -> tuple[list[Record], int]:
        query = sa.select(end_users).where(end_users.c.platform_id == platform_id, end_users.c.deleted_at.is_(None))
        if external_id is not None:
            query = query.where(end_users.c.external_id == external_id)
        order = [end_users.c.created_at.desc(), end_users.c.id.desc()]
        async with self._reader.connect() as conn:
            return await fetch_page(conn, query, order, offset, limit)

    async def update(
        self, platform_id: str, end_user_id: str, values: Mapping[str, Any], now: datetime
    ) -> Record | None:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(end_users).where(_live(platform_id, end_user_id)).values({**values, "updated_at": now})
            )
            if result.rowcount == 0:
                return None
            row = (await conn.execute(sa.select(end_users).where(end_users.c.id == end_user_id))).first()
        return None if row is None else dict(row._mapping)

    async def delete(self, platform_id: str, end_user_id: str, now: datetime) -> bool:
        """Soft deletion: frees the external_id (the unique index covers live rows only), revokes every key of the
        end user and deactivates its budget, in one transaction."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(end_users).where(_live(platform_id, end_user_id)).values(deleted_at=now, updated_at=now)
            )
            if result.rowcount == 0:
                return False
            await conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.end_user_id == end_user_id, api_keys.c.platform_id == platform_id)
                .values(is_active=False, revoked_at=sa.func.coalesce(api_keys.c.revoked_at, now))
            )
            await conn.execute(
                sa.update(budgets).where(budgets.c.end_user_id == end_user_id).values(is_active=False, updated_at=now)
            )
        return True

    async def create_key(self, platform_id: str, end_user_id: str, key_values: Mapping[str, Any]) -> Record | None:
        """A new key for a live end user; None when it is unknown or deleted."""
        async with self._engine.begin() as conn:
            if (await conn.execute(sa.select(end_users.c.id).where(_live(platform_id, end_user_id)))).first() is None:
                return None
            return await _insert_end_user_key(conn, platform_id, end_user_id, key_values)


async def _insert_end_user_key(
    conn: AsyncConnection, platform_id: str, end_user_id: str, key_values: Mapping[str, Any]
) -> dict[str, Any]:
    return await insert_key(conn, {**key_values, "platform_id": platform_id, "end_user_id": end_user_id})


class SqlLiveEndUsers:
    """The ``LiveEndUsers`` port on the connection of a unit of work."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def is_live(self, platform_id: str, end_user_id: str) -> bool:
        found = await self._conn.execute(sa.select(end_users.c.id).where(_live(platform_id, end_user_id)))
        return found.first() is not None
