"""A platform's provider credentials (SPEC §5.3): sealed keys in, config rows out. The ciphertext never leaves this
module except through routing's ``catalog``; every query is scoped by platform. At most one default per provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.domain.clock import utcnow
from tollway.domain.conflicts import ProviderUnavailable
from tollway.domain.ids import new_id
from tollway.domain.records import Record
from tollway.storage.sql.paging import fetch_page
from tollway.storage.sql.tables import llm_configs, platforms, providers

_VIEW = sa.select(
    llm_configs.c.id,
    llm_configs.c.platform_id,
    llm_configs.c.provider_id,
    providers.c.slug.label("provider_slug"),
    llm_configs.c.is_default,
    llm_configs.c.is_active,
    llm_configs.c.created_at,
    llm_configs.c.updated_at,
).select_from(llm_configs.join(providers, providers.c.id == llm_configs.c.provider_id))


async def _require_active_provider(conn: AsyncConnection, provider_id: str) -> None:
    query = sa.select(providers.c.id).where(providers.c.id == provider_id, providers.c.is_active.is_(True))
    if (await conn.execute(query.with_for_update(read=True))).first() is None:
        raise ProviderUnavailable


async def _lock_platform(conn: AsyncConnection, platform_id: str) -> None:
    """Serialises config writes per platform, so concurrent writes cannot leave two defaults for one provider."""
    await conn.execute(sa.select(platforms.c.id).where(platforms.c.id == platform_id).with_for_update(key_share=True))


async def _one(conn: AsyncConnection, platform_id: str, config_id: str) -> Record | None:
    row = (
        await conn.execute(_VIEW.where(llm_configs.c.id == config_id, llm_configs.c.platform_id == platform_id))
    ).first()
    return None if row is None else dict(row._mapping)


async def _clear_other_defaults(conn: AsyncConnection, platform_id: str, provider_id: str, keep_id: str) -> None:
    await conn.execute(
        sa.update(llm_configs)
        .where(
            llm_configs.c.platform_id == platform_id,
            llm_configs.c.provider_id == provider_id,
            llm_configs.c.id != keep_id,
            llm_configs.c.is_default.is_(True),
        )
        .values(is_default=False, updated_at=utcnow())
    )


class LlmConfigStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, platform_id: str, values: Mapping[str, Any]) -> Record:
        """``values``: provider_id, api_key_ciphertext, is_default, is_active. Raises ``ProviderUnavailable``."""
        now = utcnow()
        config_id = new_id()
        row = {**values, "id": config_id, "platform_id": platform_id, "created_at": now, "updated_at": now}
        async with self._engine.begin() as conn:
            await _lock_platform(conn, platform_id)
            await _require_active_provider(conn, row["provider_id"])
            if row["is_default"]:
                await _clear_other_defaults(conn, platform_id, row["provider_id"], config_id)
            await conn.execute(sa.insert(llm_configs).values(row))
            created = await _one(conn, platform_id, config_id)
        assert created is not None
        return created

    async def get(self, platform_id: str, config_id: str) -> Record | None:
        async with self._engine.connect() as conn:
            return await _one(conn, platform_id, config_id)

    async def list_configs(
        self, platform_id: str, provider_id: str | None, offset: int, limit: int
    ) -> tuple[list[Record], int]:
        query = _VIEW.where(llm_configs.c.platform_id == platform_id)
        if provider_id is not None:
            query = query.where(llm_configs.c.provider_id == provider_id)
        order = [llm_configs.c.created_at.desc(), llm_configs.c.id.desc()]
        async with self._engine.connect() as conn:
            return await fetch_page(conn, query, order, offset, limit)

    async def update(self, platform_id: str, config_id: str, values: Mapping[str, Any]) -> Record | None:
        async with self._engine.begin() as conn:
            await _lock_platform(conn, platform_id)
            current = await _one(conn, platform_id, config_id)
            if current is None:
                return None
            if "provider_id" in values:
                await _require_active_provider(conn, values["provider_id"])
            await conn.execute(
                sa.update(llm_configs)
                .where(llm_configs.c.id == config_id, llm_configs.c.platform_id == platform_id)
                .values({**values, "updated_at": utcnow()})
            )
            updated = await _one(conn, platform_id, config_id)
            assert updated is not None
            if updated["is_default"]:
                await _clear_other_defaults(conn, platform_id, updated["provider_id"], config_id)
        return updated

    async def delete(self, platform_id: str, config_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.delete(llm_configs).where(llm_configs.c.id == config_id, llm_configs.c.platform_id == platform_id)
            )
        return result.rowcount > 0
