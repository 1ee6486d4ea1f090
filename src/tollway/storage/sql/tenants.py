"""Platforms (tenants): creation with their wallet and first key in one transaction, reads, updates and soft
deletion (SPEC §4.3, §5.1). A deleted platform is invisible here; its ledgers and logs stay in the database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.domain.clock import utcnow
from tollway.domain.conflicts import Duplicate
from tollway.domain.ids import new_id
from tollway.domain.platforms import SLUG_MAX, next_free_slug
from tollway.domain.records import Record
from tollway.storage.sql.api_keys import insert_key
from tollway.storage.sql.paging import fetch_page
from tollway.storage.sql.tables import platforms, wallets

_DERIVED_SLUG_ATTEMPTS = 10


def _live(platform_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(platforms.c.id == platform_id, platforms.c.deleted_at.is_(None))


class PlatformStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(
        self,
        *,
        name: str,
        slug: str | None,
        slug_base: str,
        settings: Mapping[str, Any],
        key_values: Mapping[str, Any],
    ) -> tuple[Record, Record, Record]:
        """Platform, wallet at 0 and first platform key, all or nothing. An explicit ``slug`` that is taken raises
        ``Duplicate``; a derived one takes the first free ``slug_base[-n]`` (retried if a concurrent create won)."""
        attempts = 1 if slug is not None else _DERIVED_SLUG_ATTEMPTS
        for attempt in range(attempts):
            try:
                return await self._create_once(name, slug, slug_base, settings, key_values)
            except sa.exc.IntegrityError as exc:
                if attempt == attempts - 1:
                    raise Duplicate from exc
        raise AssertionError("unreachable")

    async def _create_once(
        self,
        name: str,
        slug: str | None,
        slug_base: str,
        settings: Mapping[str, Any],
        key_values: Mapping[str, Any],
    ) -> tuple[Record, Record, Record]:
        now = utcnow()
        async with self._engine.begin() as conn:
            if slug is None:
                # Every candidate starts with this prefix: a suffix up to "-999999" leaves 56 characters of the base.
                prefix = slug_base[: SLUG_MAX - 8]
                query = sa.select(platforms.c.slug).where(platforms.c.slug.like(f"{prefix}%"))
                taken = set((await conn.execute(query)).scalars())
                slug = next_free_slug(slug_base, taken)
            platform = {
                "id": new_id(),
                "name": name,
                "slug": slug,
                "settings": dict(settings),
                "deleted_at": None,
                "created_at": now,
                "updated_at": now,
            }
            wallet = {
                "id": new_id(),
                "platform_id": platform["id"],
                "balance_nanos": 0,
                "held_nanos": 0,
                "created_at": now,
                "updated_at": now,
            }
            await conn.execute(sa.insert(platforms).values(platform))
            await conn.execute(sa.insert(wallets).values(wallet))
            key = await insert_key(conn, {**key_values, "platform_id": platform["id"]})
        return platform, wallet, key

    async def get(self, platform_id: str) -> Record | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(platforms).where(_live(platform_id)))).first()
        return None if row is None else dict(row._mapping)

    async def list_platforms(self, offset: int, limit: int) -> tuple[list[Record], int]:
        query = sa.select(platforms).where(platforms.c.deleted_at.is_(None))
        order = [platforms.c.created_at.desc(), platforms.c.id.desc()]
        async with self._engine.connect() as conn:
            return await fetch_page(conn, query, order, offset, limit)

    async def update(self, platform_id: str, *, name: str | None, settings_patch: Mapping[str, Any]) -> Record | None:
        """Sets ``name`` when given and replaces each stored settings key in ``settings_patch`` whole; the merge
        happens under the row lock, so concurrent PATCHes of different settings keys do not undo each other."""
        async with self._engine.begin() as conn:
            current = (
                await conn.execute(
                    sa.select(platforms.c.settings).where(_live(platform_id)).with_for_update(key_share=True)
                )
            ).first()
            if current is None:
                return None
            values: dict[str, Any] = {"updated_at": utcnow()}
            if name is not None:
                values["name"] = name
            if settings_patch:
                values["settings"] = {**(current.settings or {}), **settings_patch}
            await conn.execute(sa.update(platforms).where(platforms.c.id == platform_id).values(values))
            row = (await conn.execute(sa.select(platforms).where(platforms.c.id == platform_id))).first()
        return None if row is None else dict(row._mapping)

    async def soft_delete(self, platform_id: str) -> bool:
        now = utcnow()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(platforms).where(_live(platform_id)).values(deleted_at=now, updated_at=now)
            )
        return result.rowcount > 0
