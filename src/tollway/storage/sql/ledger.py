"""Wallets, their ledger rows and the usage log, as the management API reads them (SPEC §5.7, §9.5, §12), and the
wallet top-up (the operator's, §4.3, and a card payment's, §17.2): the balance change, its ``topup`` row and its
``wallet.topped_up`` outbox rows commit in one transaction (§9.6 invariants 1 and 8)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.domain.clock import utcnow
from tollway.domain.conflicts import BalanceOverflow
from tollway.domain.ids import new_id
from tollway.domain.platform_settings import PlatformSettings
from tollway.domain.records import Record
from tollway.domain.webhooks import EventType, wallet_data
from tollway.storage.sql import outbox
from tollway.storage.sql.db import reader
from tollway.storage.sql.paging import fetch_page, ledger_page
from tollway.storage.sql.tables import platforms, usage_logs, wallet_transactions, wallets

BIGINT_MAX: Final = 2**63 - 1


class LedgerStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)  # listings never take SQLite's write lock

    async def wallet(self, platform_id: str) -> Record | None:
        """The wallet of a live platform."""
        query = (
            sa.select(wallets)
            .select_from(wallets.join(platforms, platforms.c.id == wallets.c.platform_id))
            .where(wallets.c.platform_id == platform_id, platforms.c.deleted_at.is_(None))
        )
        async with self._reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else dict(row._mapping)

    async def transactions(
        self,
        platform_id: str,
        *,
        txn_type: str | None,
        since: datetime | None,
        until: datetime | None,
        offset: int,
        limit: int,
    ) -> tuple[list[Record], int]:
        async with self._reader.connect() as conn:
            return await ledger_page(
                conn,
                wallet_transactions,
                wallet_transactions.c.platform_id == platform_id,
                txn_type=txn_type,
                since=since,
                until=until,
                offset=offset,
                limit=limit,
            )

    async def usage_logs(
        self,
        platform_id: str,
        filters: Mapping[str, str],
        since: datetime | None,
        until: datetime | None,
        offset: int,
        limit: int,
    ) -> tuple[list[Record], int]:
        """``filters`` maps a usage-log column (model, end_user_id, status, request_type, response_id, thread_id,
        mcp_app) to its required value."""
        query = sa.select(usage_logs).where(usage_logs.c.platform_id == platform_id)
        for column, value in filters.items():
            query = query.where(usage_logs.c[column] == value)
        if since is not None:
            query = query.where(usage_logs.c.created_at >= since)
        if until is not None:
            query = query.where(usage_logs.c.created_at < until)
        order = [usage_logs.c.created_at.desc(), usage_logs.c.id.desc()]
        async with self._reader.connect() as conn:
            return await fetch_page(conn, query, order, offset, limit)


async def credit_wallet(
    conn: AsyncConnection,
    platform_id: str,
    amount_nanos: int,
    *,
    description: str | None,
    metadata: Mapping[str, Any],
    request_id: str | None,
) -> tuple[Record, Record] | None:
    """Inside the caller's transaction (so that an idempotency record commits with it, §9.7): credits a live
    platform's wallet, appends its ``topup`` row and queues its ``wallet.topped_up`` event for the endpoints that
    subscribe to it; None when the platform is unknown or deleted. The increment is
    done in SQL, so it composes with concurrent settlements on the same row."""
    now = utcnow()
    live = sa.select(platforms.c.settings).where(platforms.c.id == platform_id, platforms.c.deleted_at.is_(None))
    platform = (await conn.execute(live)).first()
    if platform is None:
        return None
    threshold = PlatformSettings.from_stored(platform.settings).wallet_low_balance_threshold_nanos
    new_balance = wallets.c.balance_nanos + amount_nanos
    # wallet.low_balance re-arms on a topup that leaves the balance above the threshold (SPEC §9.8).
    armed: Any = wallets.c.low_balance_armed
    if threshold is not None:
        armed = sa.case((new_balance > threshold, sa.true()), else_=wallets.c.low_balance_armed)
    updated = (
        await conn.execute(
            sa.update(wallets)
            .where(wallets.c.platform_id == platform_id, wallets.c.balance_nanos <= BIGINT_MAX - amount_nanos)
            .values(balance_nanos=new_balance, low_balance_armed=armed, updated_at=now)
            .returning(*wallets.c)
        )
    ).first()
    if updated is None:
        raise BalanceOverflow
    wallet = dict(updated._mapping)
    txn = {
        "id": new_id(),
        "wallet_id": wallet["id"],
        "platform_id": platform_id,
        "type": "topup",
        "amount_nanos": amount_nanos,
        "balance_after_nanos": wallet["balance_nanos"],
        "description": description,
        "metadata": dict(metadata),
        "request_id": request_id,
        "created_at": now,
    }
    await conn.execute(sa.insert(wallet_transactions).values(txn))
    event = wallet_data(
        platform_id=platform_id,
        wallet_id=wallet["id"],
        transaction_id=txn["id"],
        txn_type="topup",
        amount_nanos=amount_nanos,
        balance_after_nanos=wallet["balance_nanos"],
        threshold_nanos=threshold,
        request_id=request_id,
    )
    await outbox.enqueue(
        conn, [outbox.PendingEvent(platform_id, EventType.WALLET_TOPPED_UP.value, txn["id"], event)], now
    )
    return wallet, txn


class SqlWalletLedger:
    """The ``WalletLedger`` port on the connection of a unit of work."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def credit(
        self,
        platform_id: str,
        amount_nanos: int,
        *,
        description: str | None,
        metadata: Mapping[str, Any],
        request_id: str | None,
    ) -> tuple[Record, Record] | None:
        return await credit_wallet(
            self._conn, platform_id, amount_nanos, description=description, metadata=metadata, request_id=request_id
        )
