"""``/readyz``'s database checks (SPEC §13.4): the database answers, and its schema is at the head migration.
``DatabaseHealth`` implements the ``DatabaseProbe`` port (``domain/ports/operations.py``)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.settings import Settings
from tollway.storage.sql.migrate import current_revision, head_revision


class DatabaseHealth:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def migrations_at_head(self) -> bool:
        return await current_revision(self._engine) == head_revision(self._settings)
