"""Per-end-user rate-limit overrides (SPEC §5.6) and what the limiter reads: an end user's override row with its
platform's default limits, in one query. Management reads and writes see live end users of the platform only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.domain.platform_settings import PlatformSettings, RateLimits
from tollway.domain.records import Record
from tollway.storage.sql.db import one_of, reader
from tollway.storage.sql.tables import end_users, platforms, rate_limit_overrides

_overrides = rate_limit_overrides


def _live_end_user(platform_id: str, end_user_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        end_users.c.id == end_user_id, end_users.c.platform_id == platform_id, end_users.c.deleted_at.is_(None)
    )


def _upsert(conn: AsyncConnection, values: dict[str, Any]) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_overrides).values(values)
    changed = {name: statement.excluded[name] for name in ("rpm_limit", "tpm_limit", "rpd_limit", "updated_at")}
    return statement.on_conflict_do_update(index_elements=[_overrides.c.end_user_id], set_=changed)


class RateOverrideStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)
        # ``limits_of_many``'s two reads, one statement shape each for any number of end users on PostgreSQL.
        dialect_name = engine.dialect.name
        self._settings_of = sa.select(platforms.c.id, platforms.c.settings).where(
            one_of(platforms.c.id, "ids", dialect_name)
        )
        self._overrides_of = sa.select(_overrides).where(one_of(_overrides.c.end_user_id, "ids", dialect_name))

    async def end_user_exists(self, platform_id: str, end_user_id: str) -> bool:
        async with self._reader.connect() as conn:
            found = await conn.execute(sa.select(end_users.c.id).where(_live_end_user(platform_id, end_user_id)))
            return found.first() is not None

    async def get(self, platform_id: str, end_user_id: str) -> Record | None:
        """The override of a live end user of this platform, or None (no such end user, or no override)."""
        query = (
            sa.select(_overrides)
            .join(end_users, end_users.c.id == _overrides.c.end_user_id)
            .where(_live_end_user(platform_id, end_user_id))
        )
        async with self._reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else dict(row._mapping)

    async def put(self, platform_id: str, end_user_id: str, limits: RateLimits, now: datetime) -> Record | None:
        """Creates or replaces the override (all three values); None when the end user is not a live one here."""
        values = {
            "end_user_id": end_user_id,
            "platform_id": platform_id,
            "rpm_limit": limits.rpm,
            "tpm_limit": limits.tpm,
            "rpd_limit": limits.rpd,
            "updated_at": now,
        }
        async with self._engine.begin() as conn:
            live = await conn.execute(sa.select(end_users.c.id).where(_live_end_user(platform_id, end_user_id)))
            if live.first() is None:
                return None
            await conn.execute(_upsert(conn, values))
            row = (await conn.execute(sa.select(_overrides).where(_overrides.c.end_user_id == end_user_id))).one()
        return dict(row._mapping)

    async def delete(self, platform_id: str, end_user_id: str) -> bool:
        """Removes the override if any; False when the end user is not a live one of this platform."""
        async with self._engine.begin() as conn:
            live = await conn.execute(sa.select(end_users.c.id).where(_live_end_user(platform_id, end_user_id)))
            if live.first() is None:
                return False
            await conn.execute(
                sa.delete(_overrides).where(
                    _overrides.c.end_user_id == end_user_id, _overrides.c.platform_id == platform_id
                )
            )
        return True

    async def limits_of(self, platform_id: str, end_user_id: str) -> tuple[RateLimits | None, RateLimits]:
        """(the override, or None without a row; the platform's default limits) in one round trip."""
        joined = platforms.outerjoin(
            _overrides, sa.and_(_overrides.c.end_user_id == end_user_id, _overrides.c.platform_id == platforms.c.id)
        )
        query = (
            sa.select(
                platforms.c.settings,
                _overrides.c.end_user_id,
                _overrides.c.rpm_limit,
                _overrides.c.tpm_limit,
                _overrides.c.rpd_limit,
            )
            .select_from(joined)
            .where(platforms.c.id == platform_id)
        )
        async with self._reader.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None, RateLimits()
        defaults = PlatformSettings.from_stored(row.settings).rate_limits
        if row.end_user_id is None:
            return None, defaults
        return RateLimits(row.rpm_limit, row.tpm_limit, row.rpd_limit), defaults

    async def limits_of_many(self, end_users: list[tuple[str, str]]) -> dict[str, tuple[RateLimits | None, RateLimits]]:
        """``limits_of`` of many end users: their platforms' settings and their overrides, two queries on one
        connection (chunked under SQLite's limit on bound parameters)."""
        settings: dict[str, RateLimits] = {}
        overrides: dict[str, tuple[str, RateLimits]] = {}
        platform_ids = sorted({platform_id for platform_id, _user in end_users})
        user_ids = [user for _platform_id, user in end_users]
        async with self._reader.connect() as conn:
            for chunk in _chunks(platform_ids):
                for row in await conn.execute(self._settings_of, {"ids": chunk}):
                    settings[row.id] = PlatformSettings.from_stored(row.settings).rate_limits
            for chunk in _chunks(user_ids):
                for row in await conn.execute(self._overrides_of, {"ids": chunk}):
                    limits = RateLimits(row.rpm_limit, row.tpm_limit, row.rpd_limit)
                    overrides[row.end_user_id] = (row.platform_id, limits)
        found: dict[str, tuple[RateLimits | None, RateLimits]] = {}
        for platform_id, user in end_users:
            defaults, override = settings.get(platform_id), overrides.get(user)
            if defaults is None:  # as limits_of: no such platform, no limits
                found[user] = (None, RateLimits())
            else:
                found[user] = (override[1] if override is not None and override[0] == platform_id else None, defaults)
        return found


def _chunks(values: list[str], size: int = 500) -> list[list[str]]:
    return [values[start : start + size] for start in range(0, len(values), size)]
