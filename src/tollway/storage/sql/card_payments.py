"""Checkout Sessions that have credited a wallet (SPEC §17.2), claimed inside the credit's transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.storage.sql.tables import card_payments


class SqlCardPayments:
    """The ``CardPayments`` port on the connection of a unit of work."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def claim(self, session_id: str, platform_id: str, amount_nanos: int, at: datetime) -> bool:
        # ON CONFLICT DO NOTHING rather than catching the violation: the transaction stays usable, and on
        # PostgreSQL a second claim of the same session waits for the first transaction's outcome (SQLite's
        # writers are serialised by BEGIN IMMEDIATE), so exactly one of two concurrent deliveries credits.
        dialect = postgresql if self._conn.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(card_payments)
            .values(session_id=session_id, platform_id=platform_id, amount_nanos=amount_nanos, created_at=at)
            .on_conflict_do_nothing(index_elements=[card_payments.c.session_id])
            .returning(card_payments.c.session_id)
        )
        return (await self._conn.execute(statement)).first() is not None
