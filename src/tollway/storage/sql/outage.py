"""The database's absence as our error (SPEC §3, §8): a database that cannot be reached is ``ServiceUnavailable``
(503 with Retry-After) on every path, never a driver exception or a 500, and services never see SQLAlchemy.

``map_outages`` translates at the engine: refused or timed-out connections, PostgreSQL's connection and
operator-intervention states (SQLSTATE classes 08 and 57P: shutting down, starting up, terminated), and
connections lost mid-statement. Other database errors (constraint violations, SQLite's lock waits) pass as they are.

On PostgreSQL it also keeps the pool from handing out a connection the server closed (a restart, an idle
connection terminated): the driver notices the closed socket as soon as the event loop reads it, so the check at
checkout costs no round trip (a pre-ping cost three), and the pool connects afresh instead. A connection lost after
the check (the server going away mid-call) is a 503 for that statement, and the pool drops every connection it
made before it (SQLAlchemy's invalidation on a disconnect), so the next call connects afresh.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa

from tollway.errors import ServiceUnavailable

UNREACHABLE: Final = "The database is unreachable."
_UNREACHABLE_SQLSTATES: Final = ("08", "57P")


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (a driver exception) says the database cannot be reached, as opposed to refusing a statement."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return isinstance(code, str) and code.startswith(_UNREACHABLE_SQLSTATES)


def map_outages(sync_engine: sa.Engine) -> None:
    """Install the translation on an engine (``storage/sql/db.py`` does it for every engine it creates)."""

    @sa.event.listens_for(sync_engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            if unreachable(exc):
                raise ServiceUnavailable(UNREACHABLE) from exc
            raise

    if sync_engine.dialect.name == "postgresql":

        @sa.event.listens_for(sync_engine, "checkout")
        def _checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            if dbapi_conn.driver_connection.is_closed():
                raise sa.exc.DisconnectionError("the server closed this pooled connection")

    @sa.event.listens_for(sync_engine, "handle_error")
    def _statement(context: sa.engine.ExceptionContext) -> None:
        # A statement interrupted by a cancellation (a timeout, a client gone, shutdown) is flagged as a disconnect,
        # so that the pool drops the connection; the cancellation itself must travel on as it is.
        if not isinstance(context.original_exception, Exception):
            return
        if context.is_disconnect or unreachable(context.original_exception):
            raise ServiceUnavailable(UNREACHABLE) from context.original_exception
