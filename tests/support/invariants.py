"""SPEC §9.6 invariants recomputed from the database, for tests to check after every step."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.support.ledger_chain import BudgetEntry, WalletEntry, budget_problems, wallet_problems
from tests.support.servers import GatewayServer, running_gateway
from tollway.settings import Settings
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.tables import budget_transactions, budgets, holds, usage_logs, wallet_transactions, wallets


async def _violations(settings: Settings) -> list[str]:
    engine = create_engine(settings)
    problems: list[str] = []
    # One snapshot: settlements commit right after responses, and READ COMMITTED could see half of one.
    snapshot = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    try:
        async with engine.connect() as raw:
            conn = await raw.execution_options(**snapshot)
            for w in (await conn.execute(sa.select(wallets))).all():
                ledger = (
                    await conn.execute(
                        sa.select(sa.func.coalesce(sa.func.sum(wallet_transactions.c.amount_nanos), 0)).where(
                            wallet_transactions.c.wallet_id == w.id
                        )
                    )
                ).scalar_one()
                held = (
                    await conn.execute(
                        sa.select(sa.func.coalesce(sa.func.sum(holds.c.wallet_nanos), 0)).where(
                            holds.c.wallet_id == w.id, holds.c.status == "active"
                        )
                    )
                ).scalar_one()
                if int(ledger) != w.balance_nanos:
                    problems.append(f"wallet {w.id}: balance {w.balance_nanos} != ledger {ledger}")
                if int(held) != w.held_nanos:
                    problems.append(f"wallet {w.id}: held {w.held_nanos} != active holds {held}")
                if w.balance_nanos - w.held_nanos < 0:
                    problems.append(f"wallet {w.id}: available negative")
            for b in (await conn.execute(sa.select(budgets))).all():
                ledger = (
                    await conn.execute(
                        sa.select(sa.func.coalesce(sa.func.sum(budget_transactions.c.amount_nanos), 0)).where(
                            budget_transactions.c.budget_id == b.id
                        )
                    )
                ).scalar_one()
                held = (
                    await conn.execute(
                        sa.select(sa.func.coalesce(sa.func.sum(holds.c.budget_nanos), 0)).where(
                            holds.c.budget_id == b.id, holds.c.status == "active"
                        )
                    )
                ).scalar_one()
                if int(ledger) != b.max_nanos - b.used_nanos:
                    problems.append(f"budget {b.id}: remaining {b.max_nanos - b.used_nanos} != ledger {ledger}")
                if int(held) != b.held_nanos:
                    problems.append(f"budget {b.id}: held {b.held_nanos} != active holds {held}")
            # invariant 3 and 6: one usage row per request, matching the log's cost − uncollected
            rows = (
                await conn.execute(
                    sa.select(
                        usage_logs.c.request_id,
                        usage_logs.c.cost_nanos,
                        usage_logs.c.uncollected_nanos,
                        usage_logs.c.charged_nanos,
                    ).where(usage_logs.c.status != "error")
                )
            ).all()
            debits: dict[str, int] = {}
            usage_rows: set[str] = set()
            for r in (
                await conn.execute(
                    sa.select(
                        wallet_transactions.c.request_id, wallet_transactions.c.type, wallet_transactions.c.amount_nanos
                    ).where(wallet_transactions.c.type.in_(("usage", "usage_correction")))
                )
            ).all():
                if r.type == "usage" and r.request_id in usage_rows:
                    problems.append(f"request {r.request_id}: two wallet usage rows")
                if r.type == "usage":
                    usage_rows.add(r.request_id)
                # a late charge's correction row (storage/money/late.py) adds to the request's usage row
                debits[r.request_id] = debits.get(r.request_id, 0) - r.amount_nanos
            charges: dict[str, int] = {}
            for r in (
                await conn.execute(
                    sa.select(budget_transactions.c.request_id, budget_transactions.c.amount_nanos).where(
                        budget_transactions.c.type.in_(("inference", "inference_correction"))
                    )
                )
            ).all():
                charges[r.request_id] = charges.get(r.request_id, 0) - r.amount_nanos
            seen: set[str] = set()
            for r in rows:
                if r.request_id in seen:
                    problems.append(f"request {r.request_id}: two settled usage rows")
                seen.add(r.request_id)
                if debits.get(r.request_id, 0) != r.cost_nanos - r.uncollected_nanos:
                    problems.append(f"request {r.request_id}: wallet row != cost - uncollected")
                if r.request_id in charges and charges[r.request_id] != (r.charged_nanos or 0):
                    problems.append(f"request {r.request_id}: budget rows != charged")
            problems += await _chain_violations(conn)
    finally:
        await engine.dispose()
    return problems


async def _chain_violations(conn: AsyncConnection) -> list[str]:
    """Every ledger's "after" amounts form one running balance from the opening state to the current one
    (SPEC §9.5; ``ledger_chain.py``)."""
    problems: list[str] = []
    w = wallet_transactions.c
    wallet_rows: dict[str, list[WalletEntry]] = defaultdict(list)
    for r in await conn.execute(sa.select(w.wallet_id, w.id, w.type, w.amount_nanos, w.balance_after_nanos)):
        wallet_rows[r.wallet_id].append(WalletEntry(r.id, r.type, r.amount_nanos, r.balance_after_nanos))
    for wallet in await conn.execute(sa.select(wallets.c.id, wallets.c.balance_nanos)):
        problems += wallet_problems(wallet.id, wallet_rows.pop(wallet.id, []), wallet.balance_nanos)
    b = budget_transactions.c
    budget_rows: dict[str, list[BudgetEntry]] = defaultdict(list)
    after = (b.max_after_nanos, b.used_after_nanos, b.remaining_after_nanos)
    for r in await conn.execute(sa.select(b.budget_id, b.id, b.type, b.amount_nanos, *after)):
        entry = BudgetEntry(r.id, r.type, r.amount_nanos, r[4], r[5], r[6])
        budget_rows[r.budget_id].append(entry)
    for budget in await conn.execute(sa.select(budgets.c.id, budgets.c.max_nanos, budgets.c.used_nanos)):
        problems += budget_problems(budget.id, budget_rows.pop(budget.id, []), budget.max_nanos, budget.used_nanos)
    problems += [f"wallet {account}: ledger rows of no wallet" for account in wallet_rows]
    problems += [f"budget {account}: ledger rows of no budget" for account in budget_rows]
    return problems


def assert_invariants(settings: Settings) -> None:
    problems = asyncio.run(_violations(settings))
    assert not problems, "\n".join(problems)


@contextmanager
def checked_gateway(settings: Settings) -> Iterator[GatewayServer]:
    """A running gateway whose database is checked (``assert_invariants``, ledger chains included) once it has
    stopped: the ``gateway`` fixtures serve a whole module through it, so every module that moves money ends with its
    ledgers checked, at the price of one query set per module."""
    with running_gateway(settings) as server:
        yield server
    assert_invariants(settings)


def count(settings: Settings, table: Any, *where: Any) -> int:
    async def run() -> int:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                return int(
                    (await conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))).scalar_one()
                )
        finally:
            await engine.dispose()

    return asyncio.run(run())
