"""Static SQL run below SQLAlchemy's statement compiler, for the money writer's hot path.

Building and caching a Core statement costs more than SQLite takes to run it, so the writer uses plain SQL with
``:name`` placeholders, converted once per dialect to the driver's positional style (``?`` for pysqlite, ``$n`` for
asyncpg), and encodes timestamps and JSON the way the SQLAlchemy column types of ``tables.py`` store them.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import Connection

# The money writer runs its batches either on a raw sqlite3 connection (SQLite: no SQLAlchemy on the hot path at
# all) or on a SQLAlchemy sync Connection inside ``AsyncConnection.run_sync`` (PostgreSQL through asyncpg).
DriverConnection = sqlite3.Connection | Connection

_PLACEHOLDER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


class DriverSQL:
    def __init__(self, dialect_name: str) -> None:
        self.sqlite = dialect_name == "sqlite"
        self._cache: dict[str, tuple[str, tuple[str, ...]]] = {}

    def _convert(self, sql: str) -> tuple[str, tuple[str, ...]]:
        hit = self._cache.get(sql)
        if hit is None:
            names: list[str] = []

            def replace(match: re.Match[str]) -> str:
                names.append(match.group(1))
                return "?" if self.sqlite else f"${len(names)}"

            hit = (_PLACEHOLDER.sub(replace, sql), tuple(names))
            self._cache[sql] = hit
        return hit

    def execute(self, conn: DriverConnection, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        text, names = self._convert(sql)
        values = tuple((params or {})[name] for name in names)
        if isinstance(conn, sqlite3.Connection):
            return conn.execute(text, values).fetchall()
        result = conn.exec_driver_sql(text, values)
        return list(result) if result.returns_rows else []

    def executemany(self, conn: DriverConnection, sql: str, rows: Sequence[dict[str, Any]]) -> None:
        text, names = self._convert(sql)
        values = [tuple(row[name] for name in names) for row in rows]
        if isinstance(conn, sqlite3.Connection):
            conn.executemany(text, values)
        else:
            conn.exec_driver_sql(text, values)

    def ts(self, value: datetime | None) -> Any:
        """SQLite stores naive UTC text as SQLAlchemy's DateTime does; PostgreSQL takes the aware datetime."""
        if value is None or not self.sqlite:
            return value
        # The text of strftime("%Y-%m-%d %H:%M:%S.%f"), several times faster.
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def json(self, value: Any) -> Any:
        return None if value is None else orjson.dumps(value).decode()

    @staticmethod
    def in_list(prefix: str, values: Iterable[str]) -> tuple[str, dict[str, str]]:
        """``(:p0, :p1, …)`` and its parameters, for an IN clause over a batch's ids."""
        params = {f"{prefix}{i}": v for i, v in enumerate(values)}
        return "(" + ", ".join(f":{name}" for name in params) + ")", params

    def any_of(self, sql: str, lists: dict[str, list[str]]) -> tuple[str, dict[str, Any]]:
        """``sql`` with each ``IN (:name)`` matched against the ids in ``lists[name]``, and its parameters.

        PostgreSQL: ``= ANY(:name)`` with one text array parameter, so the statement has one shape however many
        ids a batch has, and asyncpg prepares it once per connection (a list of placeholders gave every batch size
        its own statement to prepare). SQLite: ``IN (:name0, :name1, …)``, one placeholder per id.
        """
        params: dict[str, Any] = {}
        for name, values in lists.items():
            marker = f"IN (:{name})"
            assert marker in sql, marker
            if self.sqlite:
                clause, expanded = self.in_list(name, values)
                sql = sql.replace(marker, "IN " + clause)
                params.update(expanded)
            else:
                sql = sql.replace(marker, f"= ANY(:{name}::text[])")
                params[name] = list(values)
        return sql, params
