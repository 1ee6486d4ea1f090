"""Reconcile (SPEC §9.6): recompute invariants 1, 2 and 6 from the ledgers, holds and usage logs in one read
snapshot, and list every difference (the kinds are described in ``domain/reconciliation.py``). Also the two
store-wide totals ``/metrics`` reads at scrape time. ``MoneyAuditStore`` is the ``MoneyAudit`` port over both.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.domain.clock import utcnow
from tollway.domain.reconciliation import Difference, ReconcileReport, StoreTotals
from tollway.storage.sql.db import reader
from tollway.storage.sql.tables import budget_transactions, budgets, holds, usage_logs, wallet_transactions, wallets


def _sum(column: sa.ColumnElement[int], *where: sa.ColumnElement[bool]) -> sa.ScalarSelect[int]:
    return sa.select(sa.func.coalesce(sa.func.sum(column), 0)).where(*where).scalar_subquery()


async def _wallets(conn: AsyncConnection) -> tuple[int, list[Difference]]:
    query = sa.select(
        wallets.c.id,
        wallets.c.balance_nanos,
        wallets.c.held_nanos,
        _sum(wallet_transactions.c.amount_nanos, wallet_transactions.c.wallet_id == wallets.c.id).label("ledger"),
        _sum(holds.c.wallet_nanos, holds.c.wallet_id == wallets.c.id, holds.c.status == "active").label("active"),
    ).order_by(wallets.c.id)
    rows = (await conn.execute(query)).all()
    found: list[Difference] = []
    for row in rows:
        balance, held = int(row.balance_nanos), int(row.held_nanos)
        if int(row.ledger) != balance:
            found.append(Difference("wallet_balance", row.id, int(row.ledger), balance))
        if int(row.active) != held:
            found.append(Difference("wallet_held", row.id, int(row.active), held))
        if balance - held < 0:
            found.append(Difference("wallet_available", row.id, 0, balance - held))
    return len(rows), found


async def _budgets(conn: AsyncConnection) -> tuple[int, list[Difference]]:
    query = sa.select(
        budgets.c.id,
        budgets.c.max_nanos,
        budgets.c.used_nanos,
        budgets.c.held_nanos,
        _sum(budget_transactions.c.amount_nanos, budget_transactions.c.budget_id == budgets.c.id).label("ledger"),
        _sum(holds.c.budget_nanos, holds.c.budget_id == budgets.c.id, holds.c.status == "active").label("active"),
    ).order_by(budgets.c.id)
    rows = (await conn.execute(query)).all()
    found: list[Difference] = []
    for row in rows:
        remaining, held = int(row.max_nanos) - int(row.used_nanos), int(row.held_nanos)
        if int(row.ledger) != remaining:
            found.append(Difference("budget_remaining", row.id, int(row.ledger), remaining))
        if int(row.active) != held:
            found.append(Difference("budget_held", row.id, int(row.active), held))
        if remaining - held < 0:
            found.append(Difference("budget_available", row.id, 0, remaining - held))
    return len(rows), found


async def _usage(conn: AsyncConnection) -> list[Difference]:
    settled = (
        sa.select(
            usage_logs.c.request_id,
            sa.func.sum(usage_logs.c.cost_nanos - usage_logs.c.uncollected_nanos).label("taken"),
            sa.func.sum(usage_logs.c.charged_nanos).label("charged"),
        )
        .where(usage_logs.c.status != "error")
        .group_by(usage_logs.c.request_id)
        .subquery()
    )
    debits = (
        sa.select(wallet_transactions.c.request_id, (-sa.func.sum(wallet_transactions.c.amount_nanos)).label("debit"))
        .where(wallet_transactions.c.type.in_(("usage", "usage_correction")))
        .group_by(wallet_transactions.c.request_id)
        .subquery()
    )
    charges = (
        sa.select(budget_transactions.c.request_id, (-sa.func.sum(budget_transactions.c.amount_nanos)).label("charge"))
        .where(budget_transactions.c.type.in_(("inference", "inference_correction")))
        .group_by(budget_transactions.c.request_id)
        .subquery()
    )
    debit = sa.func.coalesce(debits.c.debit, 0)
    wallet_side = (
        sa.select(settled.c.request_id, settled.c.taken, debit.label("debit"))
        .select_from(settled.outerjoin(debits, debits.c.request_id == settled.c.request_id))
        .where(settled.c.taken != debit)
    )
    orphan_debits = (
        sa.select(debits.c.request_id, debits.c.debit)
        .select_from(debits.outerjoin(settled, settled.c.request_id == debits.c.request_id))
        .where(settled.c.request_id.is_(None))
    )
    charged = sa.func.coalesce(settled.c.charged, 0)
    budget_side = (
        sa.select(charges.c.request_id, charged.label("charged"), charges.c.charge)
        .select_from(charges.outerjoin(settled, settled.c.request_id == charges.c.request_id))
        .where(charged != charges.c.charge)
    )
    found = [
        Difference("usage_wallet_row", r.request_id, int(r.taken), int(r.debit))
        for r in (await conn.execute(wallet_side.order_by(settled.c.request_id))).all()
    ]
    found += [
        Difference("usage_wallet_row", r.request_id, 0, int(r.debit))
        for r in (await conn.execute(orphan_debits.order_by(debits.c.request_id))).all()
    ]
    found += [
        Difference("usage_budget_row", r.request_id, int(r.charged), int(r.charge))
        for r in (await conn.execute(budget_side.order_by(charges.c.request_id))).all()
    ]
    return found


async def reconcile(engine: AsyncEngine) -> ReconcileReport:
    """Invariants 1, 2 and 6 over one consistent snapshot of the store."""
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    async with reader(engine).connect() as conn:
        conn = await conn.execution_options(**options)
        async with conn.begin():
            checked_at = utcnow()
            wallet_count, found = await _wallets(conn)
            budget_count, budget_found = await _budgets(conn)
            found += budget_found
            found += await _usage(conn)
    return ReconcileReport(checked_at, wallet_count, budget_count, found)


async def store_totals(engine: AsyncEngine) -> StoreTotals:
    """Active holds and total uncollected n$ for ``/metrics``; the second scans only rows with a shortfall."""
    async with reader(engine).connect() as conn:
        active = (
            await conn.execute(sa.select(sa.func.count()).select_from(holds).where(holds.c.status == "active"))
        ).scalar_one()
        uncollected = (
            await conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(usage_logs.c.uncollected_nanos), 0)).where(
                    usage_logs.c.uncollected_nanos > 0
                )
            )
        ).scalar_one()
    return StoreTotals(int(active), int(uncollected))


class MoneyAuditStore:
    """The ``MoneyAudit`` port (``domain/ports/operations.py``) over one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def reconcile(self) -> ReconcileReport:
        return await reconcile(self._engine)

    async def store_totals(self) -> StoreTotals:
        return await store_totals(self._engine)
