"""End-user budgets and their append-only ledger in SQL (SPEC §5.5, §9.5, §9.8): rows read, locked (PostgreSQL
``FOR NO KEY UPDATE``; SQLite transactions already hold the write lock from ``BEGIN IMMEDIATE``) and written back
exactly as ``domain/budget_changes.py`` decided, each change with its ledger rows and outbox rows in one transaction.

Inference holds and settlements do not come here: the money writer's batches (``storage/money``) apply them, with
the same reset and low-balance rules of ``domain/budgets.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.domain.budget_changes import BudgetRow, BudgetStep, reset_if_due
from tollway.domain.budgets import BudgetEvent, period_start_at
from tollway.domain.clock import as_utc
from tollway.domain.conflicts import BudgetExists
from tollway.domain.platform_settings import BudgetPeriod
from tollway.domain.records import Record
from tollway.domain.webhooks import budget_data
from tollway.storage.sql import outbox
from tollway.storage.sql.db import reader
from tollway.storage.sql.paging import ledger_page
from tollway.storage.sql.tables import budget_transactions, budgets, end_users, webhook_deliveries, webhook_events

_RESET_SCAN_BATCH: Final = 500


def budget_row(row: Mapping[Any, Any]) -> BudgetRow:
    return BudgetRow(
        id=row["id"],
        platform_id=row["platform_id"],
        end_user_id=row["end_user_id"],
        max_nanos=int(row["max_nanos"]),
        used_nanos=int(row["used_nanos"]),
        held_nanos=int(row["held_nanos"]),
        period=BudgetPeriod(row["period"]),
        period_start=as_utc(row["period_start"]),
        auto_replenish=bool(row["auto_replenish"]),
        replenish_nanos=None if row["replenish_nanos"] is None else int(row["replenish_nanos"]),
        low_balance_threshold_nanos=None
        if row["low_balance_threshold_nanos"] is None
        else int(row["low_balance_threshold_nanos"]),
        low_balance_armed=bool(row["low_balance_armed"]),
        is_active=bool(row["is_active"]),
        is_suspended=bool(row["is_suspended"]),
        created_at=as_utc(row["created_at"]),
        updated_at=as_utc(row["updated_at"]),
    )


async def record_events(
    conn: AsyncConnection, budget: BudgetRow, transaction: Record, events: Sequence[BudgetEvent]
) -> None:
    """Webhooks (§11): called inside the transaction of every ledger row that causes ``events``, so the outbox rows
    commit if and only if the ledger row does (§9.6 invariant 8). One SELECT when nobody subscribes."""
    if not events:
        return
    subs = await outbox.subscriptions(conn, [budget.platform_id])
    wanted = [e for e in events if subs.get(budget.platform_id, {}).get(e.value)]
    if not wanted:
        return
    external = sa.select(end_users.c.external_id).where(end_users.c.id == budget.end_user_id)
    external_id = (await conn.execute(external)).scalar_one_or_none()
    data = budget_data(
        platform_id=budget.platform_id,
        end_user_id=budget.end_user_id,
        external_id=external_id,
        budget_id=budget.id,
        transaction_id=str(transaction["id"]),
        txn_type=str(transaction["type"]),
        amount_nanos=int(transaction["amount_nanos"]),
        max_after_nanos=int(transaction["max_after_nanos"]),
        used_after_nanos=int(transaction["used_after_nanos"]),
        threshold_nanos=budget.low_balance_threshold_nanos,
        reason=transaction.get("reason"),
        metadata=transaction.get("metadata") or {},
        request_id=transaction.get("request_id"),
    )
    pending = [outbox.PendingEvent(budget.platform_id, e.value, str(transaction["id"]), data) for e in wanted]
    event_rows, delivery_rows = outbox.outbox_rows(subs, pending, as_utc(transaction["created_at"]))
    await conn.execute(sa.insert(webhook_events), event_rows)
    await conn.execute(sa.insert(webhook_deliveries), delivery_rows)


# -- rows: lock, write back, append -----------------------------------------------------------------------------


def _managed(platform_id: str, end_user_id: str) -> sa.Select[Any]:
    """The budget of a live end user of this platform, active or not (management calls work on both)."""
    return (
        sa.select(budgets)
        .select_from(budgets.join(end_users, end_users.c.id == budgets.c.end_user_id))
        .where(
            end_users.c.id == end_user_id,
            end_users.c.platform_id == platform_id,
            end_users.c.deleted_at.is_(None),
        )
    )


async def lock_managed(conn: AsyncConnection, platform_id: str, end_user_id: str) -> BudgetRow | None:
    """Inside the caller's transaction: lock the budget of a live end user of this platform (active or not); None
    when the end user is unknown, deleted or has no budget."""
    row = (await conn.execute(_managed(platform_id, end_user_id).with_for_update(of=budgets, key_share=True))).first()
    return None if row is None else budget_row(row._mapping)


async def lock_and_reset(conn: AsyncConnection, platform_id: str, end_user_id: str, now: datetime) -> BudgetRow | None:
    """``lock_managed``, then the period reset that is due, if any (what every operation sees first)."""
    budget = await lock_managed(conn, platform_id, end_user_id)
    if budget is None:
        return None
    reset = reset_if_due(budget, now)
    if reset is None:
        return budget
    await apply_step(conn, reset)
    return reset.budget


async def _write(conn: AsyncConnection, budget: BudgetRow) -> None:
    """Stores the whole state of a locked row (the CHECK constraints are the last line of defence)."""
    await conn.execute(
        sa.update(budgets)
        .where(budgets.c.id == budget.id)
        .values(
            max_nanos=budget.max_nanos,
            used_nanos=budget.used_nanos,
            held_nanos=budget.held_nanos,
            period=budget.period.value,
            period_start=budget.period_start,
            auto_replenish=budget.auto_replenish,
            replenish_nanos=budget.replenish_nanos,
            low_balance_threshold_nanos=budget.low_balance_threshold_nanos,
            low_balance_armed=budget.low_balance_armed,
            is_active=budget.is_active,
            is_suspended=budget.is_suspended,
            updated_at=budget.updated_at,
        )
    )


async def _append_entries(conn: AsyncConnection, step: BudgetStep) -> None:
    for entry in step.entries:
        await conn.execute(sa.insert(budget_transactions).values(dict(entry.transaction)))
        if entry.events:
            await record_events(conn, step.budget, entry.transaction, entry.events)


async def apply_step(conn: AsyncConnection, step: BudgetStep) -> None:
    """Inside the caller's transaction, on a locked budget: its state after the step, then its ledger rows in order,
    each with the webhook events it causes."""
    await _write(conn, step.budget)
    await _append_entries(conn, step)


async def open_budget(conn: AsyncConnection, step: BudgetStep) -> None:
    """Inside the caller's transaction: inserts the new budget and its opening row. A second budget for the end user
    violates the unique index."""
    budget = step.budget
    values = {
        "id": budget.id,
        "platform_id": budget.platform_id,
        "end_user_id": budget.end_user_id,
        "max_nanos": budget.max_nanos,
        "used_nanos": budget.used_nanos,
        "held_nanos": budget.held_nanos,
        "period": budget.period.value,
        "period_start": budget.period_start,
        "auto_replenish": budget.auto_replenish,
        "replenish_nanos": budget.replenish_nanos,
        "low_balance_threshold_nanos": budget.low_balance_threshold_nanos,
        "low_balance_armed": budget.low_balance_armed,
        "is_active": budget.is_active,
        "is_suspended": budget.is_suspended,
        "created_at": budget.created_at,
        "updated_at": budget.updated_at,
    }
    await conn.execute(sa.insert(budgets).values(values))
    await _append_entries(conn, step)


class SqlBudgetLedger:
    """The ``BudgetLedger`` port on the connection of a unit of work."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def lock(self, platform_id: str, end_user_id: str) -> BudgetRow | None:
        return await lock_managed(self._conn, platform_id, end_user_id)

    async def open(self, step: BudgetStep) -> None:
        existing = sa.select(budgets.c.id).where(budgets.c.end_user_id == step.budget.end_user_id)
        if (await self._conn.execute(existing)).first() is not None:
            raise BudgetExists
        try:
            await open_budget(self._conn, step)
        except sa.exc.IntegrityError as exc:  # a concurrent create won the unique index
            raise BudgetExists from exc

    async def apply(self, step: BudgetStep) -> None:
        await apply_step(self._conn, step)


# -- background job -------------------------------------------------------------------------------------------


async def _locked_by_id(conn: AsyncConnection, budget_id: str) -> BudgetRow:
    row = (
        await conn.execute(sa.select(budgets).where(budgets.c.id == budget_id).with_for_update(key_share=True))
    ).first()
    if row is None:
        raise LookupError(f"no budget {budget_id}")
    return budget_row(row._mapping)


async def reset_due_budgets(engine: AsyncEngine, now: datetime) -> int:
    """The periodic job of §9.8 (run every 60 s): applies every due reset of an active budget, each in its own short
    transaction so that no lock is held across budgets. Returns how many budgets were reset."""
    day = period_start_at(BudgetPeriod.DAILY, now)
    month = period_start_at(BudgetPeriod.MONTHLY, now)
    due = sa.or_(
        sa.and_(budgets.c.period == BudgetPeriod.DAILY.value, budgets.c.period_start < day),
        sa.and_(budgets.c.period == BudgetPeriod.MONTHLY.value, budgets.c.period_start < month),
    )
    count, after_id = 0, ""
    while True:
        query = (
            sa.select(budgets.c.id)
            .where(budgets.c.is_active.is_(True), due, budgets.c.id > after_id)
            .order_by(budgets.c.id)
            .limit(_RESET_SCAN_BATCH)
        )
        async with reader(engine).connect() as conn:
            ids = list((await conn.execute(query)).scalars())
        for budget_id in ids:
            async with engine.begin() as conn:
                reset = reset_if_due(await _locked_by_id(conn, budget_id), now)
                if reset is not None:
                    await apply_step(conn, reset)
                    count += 1
        if len(ids) < _RESET_SCAN_BATCH:
            return count
        after_id = ids[-1]


# -- reads: a transaction of their own ------------------------------------------------------------------------


class BudgetStore:
    """The ``BudgetReads`` port: reads that never take SQLite's write lock."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._reader = reader(engine)

    async def find(self, platform_id: str, end_user_id: str) -> BudgetRow | None:
        async with self._reader.connect() as conn:
            row = (await conn.execute(_managed(platform_id, end_user_id))).first()
        return None if row is None else budget_row(row._mapping)

    async def transactions(
        self,
        budget_id: str,
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
                budget_transactions,
                budget_transactions.c.budget_id == budget_id,
                txn_type=txn_type,
                since=since,
                until=until,
                offset=offset,
                limit=limit,
            )
