"""The hold sweeper's scan (SPEC §9.4): ids of expired active holds. Resolving them is the money writer's job.
``ExpiredHoldStore`` implements the ``ExpiredHolds`` port (``domain/ports/operations.py``)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.storage.sql.db import reader
from tollway.storage.sql.tables import holds


class ExpiredHoldStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._reader = reader(engine)

    async def expired(self, now: datetime, limit: int) -> list[str]:
        query = (
            sa.select(holds.c.id)
            .where(holds.c.status == "active", holds.c.expires_at < now)
            .order_by(holds.c.expires_at)
            .limit(limit)
        )
        async with self._reader.connect() as conn:
            return list((await conn.execute(query)).scalars())
