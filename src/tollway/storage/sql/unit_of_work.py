"""The management unit of work over one SQLAlchemy connection: ``async with uow: ...; await uow.commit()``. Without
``commit`` (or on an exception) the transaction rolls back; its repositories all share the one transaction."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.storage.sql.budgets import SqlBudgetLedger
from tollway.storage.sql.card_payments import SqlCardPayments
from tollway.storage.sql.end_users import SqlLiveEndUsers
from tollway.storage.sql.idempotency import SqlIdempotencyCompletion
from tollway.storage.sql.ledger import SqlWalletLedger


class SqlUnitOfWork:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    @property
    def connection(self) -> AsyncConnection:
        """The open transaction's connection (for storage code and tests that join it)."""
        if self._conn is None:
            raise RuntimeError("the unit of work is not open")
        return self._conn

    @property
    def budgets(self) -> SqlBudgetLedger:
        return SqlBudgetLedger(self.connection)

    @property
    def wallets(self) -> SqlWalletLedger:
        return SqlWalletLedger(self.connection)

    @property
    def idempotency(self) -> SqlIdempotencyCompletion:
        return SqlIdempotencyCompletion(self.connection)

    @property
    def card_payments(self) -> SqlCardPayments:
        return SqlCardPayments(self.connection)

    @property
    def end_users(self) -> SqlLiveEndUsers:
        return SqlLiveEndUsers(self.connection)

    async def __aenter__(self) -> Self:
        if self._conn is not None:
            raise RuntimeError("the unit of work is already open")
        conn = await self._engine.connect()
        try:
            await conn.begin()  # SQLite: BEGIN IMMEDIATE (storage/sql/db.py), so writers queue up front
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction():
                await conn.rollback()
        finally:
            await conn.close()

    async def commit(self) -> None:
        await self.connection.commit()
