"""Applying Alembic migrations programmatically (no alembic.ini needed), and checking for pending ones."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.settings import Settings

_SCRIPT_LOCATION = str(Path(__file__).with_name("migrations"))


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", _SCRIPT_LOCATION)
    config.attributes["settings"] = settings
    return config


def _upgrade_in_thread(settings: Settings) -> None:
    command.upgrade(alembic_config(settings), "head")


async def upgrade(settings: Settings) -> None:
    """Apply pending migrations (env.py runs its own event loop, so it gets a thread of its own)."""
    if settings.is_sqlite:
        path = Path(settings.database_url.removeprefix("sqlite:///"))
        if path.parent and str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(_upgrade_in_thread, settings)


def head_revision(settings: Settings) -> str | None:
    return ScriptDirectory.from_config(alembic_config(settings)).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    def _read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(_read)
