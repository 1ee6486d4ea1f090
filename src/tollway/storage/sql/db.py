"""Engine construction for the two supported stores: SQLite (aiosqlite, WAL) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tollway.domain import json_bytes
from tollway.settings import Settings
from tollway.storage.sql.outage import map_outages


def _json_serializer(value: Any) -> str:
    return json_bytes.dumps(value).decode()


_READ_ONLY = "tollway_read_only"
SQLITE_PAGE_SIZE = 1024


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine for statements that only read (hot-path lookups): no write lock on SQLite; on PostgreSQL
    no transaction (autocommit), so a lookup is one round trip instead of BEGIN, the statement and ROLLBACK. Under
    READ COMMITTED each statement of a transaction took its own snapshot anyway, so what a reader sees is the same;
    one that needs a single snapshot over several statements asks for it (``reconcile``: REPEATABLE READ)."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT", **{_READ_ONLY: True})
    return engine.execution_options(**{_READ_ONLY: True})


def one_of(column: sa.ColumnElement[Any], name: str, dialect_name: str) -> sa.ColumnElement[bool]:
    """``column`` is one of the values of the list parameter ``name``. PostgreSQL: ``= ANY(:name)`` with one array
    parameter, one statement text however long the list, so asyncpg prepares it once per connection (an expanding
    ``IN`` is a new text, and a new prepared statement, for every list length). SQLite has no arrays: ``IN``."""
    if dialect_name == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=ARRAY(column.type)))
    return column.in_(sa.bindparam(name, expanding=True))


def _sqlite_hooks(sync_engine: sa.Engine) -> None:
    @sa.event.listens_for(sync_engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        # The driver must not open transactions on its own; the "begin" hook below does it.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        # Small pages: every commit rewrites each page it touches in the write-ahead log, and a settlement touches
        # about a dozen B-trees; 1 KiB pages keep that to ~15 KiB per call. Takes effect on a new database only.
        cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(sync_engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        # Transactions take the write lock up front, so concurrent writers queue (busy_timeout) instead of
        # failing on a lock upgrade. Readers marked read-only (see ``reader``) begin deferred: under WAL they
        # never wait for the writer.
        if conn.get_execution_options().get(_READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(settings: Settings) -> AsyncEngine:
    """One engine per process; SQLite gets WAL, a busy timeout and foreign keys on every connection; on both stores
    an unreachable database raises ``ServiceUnavailable``."""
    if settings.is_sqlite:
        engine = create_async_engine(
            settings.sqlalchemy_url,
            json_serializer=_json_serializer,
            json_deserializer=orjson.loads,
            connect_args={"timeout": 30},
        )

        _sqlite_hooks(engine.sync_engine)
    else:
        engine = create_async_engine(
            settings.sqlalchemy_url,
            json_serializer=_json_serializer,
            json_deserializer=orjson.loads,
            pool_size=10,
            max_overflow=10,
            # No pre-ping (it cost BEGIN, a statement and ROLLBACK on every checkout): ``map_outages`` replaces a
            # pooled connection the server closed (a restart) at checkout, without a round trip.
        )
    map_outages(engine.sync_engine)  # an unreachable database is a 503 on every path
    return engine
