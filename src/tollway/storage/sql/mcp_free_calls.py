"""The platforms' free MCP calls per UTC calendar month (SPEC §16.1). A slot is taken by a conditional UPDATE
(``used < limit``): PostgreSQL re-checks the WHERE after a concurrent update and SQLite serialises writers, so no
two callers on any instances ever take the same last slot, and the count never passes the limit."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.storage.sql.tables import mcp_free_calls

_F = mcp_free_calls


class McpFreeCallStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def take(self, platform_id: str, month: str, limit: int) -> bool:
        if limit <= 0:
            return False
        row = _F.c.platform_id == platform_id
        async with self._engine.begin() as conn:
            await conn.execute(
                self._insert(_F).values(platform_id=platform_id, month=month, used=0).on_conflict_do_nothing()
            )
            taken = await conn.execute(
                sa.update(_F).where(row, _F.c.month == month, _F.c.used < limit).values(used=_F.c.used + 1)
            )
            return taken.rowcount == 1

    async def give_back(self, platform_id: str, month: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(_F)
                .where(_F.c.platform_id == platform_id, _F.c.month == month, _F.c.used > 0)
                .values(used=_F.c.used - 1)
            )

    async def used(self, platform_id: str, month: str) -> int:
        async with self._engine.connect() as conn:
            value = await conn.scalar(sa.select(_F.c.used).where(_F.c.platform_id == platform_id, _F.c.month == month))
            return int(value or 0)
