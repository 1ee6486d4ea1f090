"""The ``instance_heartbeats`` table (SPEC §13.2): register, beat, list the others, and leave on a clean exit.
``InstanceStore`` implements the ``InstanceRegistry`` port (``domain/ports/operations.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.domain.clock import as_utc
from tollway.domain.instances import Heartbeat
from tollway.storage.sql.tables import instance_heartbeats as table


class InstanceStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def register(self, beat: Heartbeat) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                table.insert().values(
                    id=beat.id,
                    hostname=beat.hostname,
                    pid=beat.pid,
                    uses_redis=beat.uses_redis,
                    started_at=beat.heartbeat_at,
                    heartbeat_at=beat.heartbeat_at,
                )
            )

    async def beat(self, instance_id: str, now: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(table.update().where(table.c.id == instance_id).values(heartbeat_at=now))

    async def leave(self, instance_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(table.delete().where(table.c.id == instance_id))

    async def others(self, instance_id: str | None) -> list[Heartbeat]:
        query = sa.select(table)
        if instance_id is not None:
            query = query.where(table.c.id != instance_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            Heartbeat(r["id"], r["hostname"], int(r["pid"]), bool(r["uses_redis"]), as_utc(r["heartbeat_at"]))
            for r in rows
        ]

    async def forget(self, instance_ids: Sequence[str]) -> None:
        """Drop rows of processes known to be dead (same host, pid gone), so they are not waited out again."""
        if instance_ids:
            async with self._engine.begin() as conn:
                await conn.execute(table.delete().where(table.c.id.in_(list(instance_ids))))
