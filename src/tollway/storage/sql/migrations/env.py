"""Alembic environment: runs migrations on the async engine, under a database lock on PostgreSQL."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

from tollway.settings import Settings
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.tables import metadata

_MIGRATION_LOCK_ID = 0x70_11_4A_7


def _run(connection: Connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=is_sqlite)
    if not is_sqlite:
        connection.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if not is_sqlite:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID})


async def _main(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _entry() -> None:
    settings = context.config.attributes.get("settings")
    if not isinstance(settings, Settings):
        settings = Settings()
    asyncio.run(_main(settings))


_entry()
