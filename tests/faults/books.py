"""What the database says about one scenario's end users, read in one snapshot: usage log rows, wallet and budget
ledger rows by request id, budgets, active holds and the wallet; and the exact checks the fault suite makes on it."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

import sqlalchemy as sa

from tests.faults.cluster import RPM, EndUser, price_nanos
from tests.faults.load import Sent
from tests.support.seed import Tenant
from tollway.settings import Settings
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.tables import budget_transactions, budgets, holds, usage_logs, wallet_transactions, wallets

WINDOW_S = 60.0


@dataclass(frozen=True)
class Row:
    request_id: str
    end_user_id: str
    model: str
    status: str
    error_code: str | None
    cost: int
    charged: int | None
    uncollected: int


@dataclass
class Books:
    rows: dict[str, list[Row]] = field(default_factory=lambda: defaultdict(list))
    wallet: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # request id -> Σ wallet debits
    wallet_rows: Counter[str] = field(default_factory=Counter)  # request id -> wallet `usage` rows
    budget: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # request id -> Σ budget charges
    budget_rows: Counter[str] = field(default_factory=Counter)  # request id -> budget `inference` rows
    used: dict[str, tuple[int, int]] = field(default_factory=dict)  # end user id -> (used, held)
    active_holds: int = 0
    balance: int = 0


async def _read(settings: Settings, platform_id: str, user_ids: list[str]) -> Books:
    engine = create_engine(settings)
    books = Books()
    try:
        async with engine.connect() as raw:
            conn = await raw.execution_options(isolation_level="REPEATABLE READ")
            logs = await conn.execute(
                sa.select(
                    usage_logs.c.request_id,
                    usage_logs.c.end_user_id,
                    usage_logs.c.model,
                    usage_logs.c.status,
                    usage_logs.c.error_code,
                    usage_logs.c.cost_nanos,
                    usage_logs.c.charged_nanos,
                    usage_logs.c.uncollected_nanos,
                ).where(usage_logs.c.end_user_id.in_(user_ids))
            )
            for r in logs.all():
                books.rows[r.request_id].append(Row(*r))
            ids = list(books.rows)
            for r in (
                await conn.execute(
                    sa.select(
                        wallet_transactions.c.request_id, wallet_transactions.c.type, wallet_transactions.c.amount_nanos
                    ).where(wallet_transactions.c.request_id.in_(ids))
                )
            ).all():
                books.wallet[r.request_id] -= r.amount_nanos
                books.wallet_rows[r.request_id] += r.type == "usage"
            for r in (
                await conn.execute(
                    sa.select(
                        budget_transactions.c.request_id, budget_transactions.c.type, budget_transactions.c.amount_nanos
                    ).where(
                        budget_transactions.c.end_user_id.in_(user_ids), budget_transactions.c.request_id.is_not(None)
                    )
                )
            ).all():
                books.budget[r.request_id] -= r.amount_nanos
                books.budget_rows[r.request_id] += r.type == "inference"
            for r in (
                await conn.execute(
                    sa.select(budgets.c.end_user_id, budgets.c.used_nanos, budgets.c.held_nanos).where(
                        budgets.c.end_user_id.in_(user_ids)
                    )
                )
            ).all():
                books.used[r.end_user_id] = (r.used_nanos, r.held_nanos)
            books.active_holds = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(holds)
                    .where(holds.c.end_user_id.in_(user_ids), holds.c.status == "active")
                )
            ).scalar_one()
            books.balance = (
                await conn.execute(sa.select(wallets.c.balance_nanos).where(wallets.c.platform_id == platform_id))
            ).scalar_one()
    finally:
        await engine.dispose()
    return books


def read_books(settings: Settings, tenant: Tenant, users: list[EndUser]) -> Books:
    return asyncio.run(_read(settings, tenant.platform_id, [u.id for u in users]))


class Money(NamedTuple):
    expected: int  # Σ prices of the complete answers checked, n$
    ledger: int  # Σ wallet debits of the same requests
    checked: int  # complete answers billed in full
    swept: int  # requests of the crash window the sweeper resolved instead


def _swept(rows: list[Row]) -> bool:
    """One row the sweeper wrote: a stream settled from its checkpoint, or a hold released at $0."""
    return len(rows) == 1 and (
        rows[0].status == "interrupted"
        or (rows[0].status, rows[0].error_code, rows[0].cost) == ("error", "hold_expired", 0)
    )


def check_money(
    books: Books, sent: list[Sent], users: list[EndUser], crash_window: frozenset[str] = frozenset()
) -> Money:
    """The exact checks. ``crash_window``: requests of an instance killed within milliseconds
    of their first checkpoint or their settlement committing (docs/operations.md, "Two windows a crash still
    leaves"); each must still have exactly one row, either the one their settlement writes or the sweeper's."""
    problems: list[str] = []
    for request_id, rows in books.rows.items():
        if len(rows) != 1 or books.wallet_rows[request_id] > 1 or books.budget_rows[request_id] > 1:
            problems.append(f"{request_id}: {len(rows)} log rows, {books.wallet_rows[request_id]} wallet rows")
    expected = ledger = checked = in_window = 0
    for s in sent:
        rows = books.rows.get(s.request_id, [])
        if s.request_id in crash_window and _swept(rows) and (s.complete or rows[0].status == "error"):
            in_window += 1  # a complete answer settled by the sweeper, or a stream it released at $0
        elif s.complete:
            price = price_nanos(s.model)
            checked += 1
            expected += price
            ledger += books.wallet[s.request_id]
            got = [(r.status, r.cost, r.uncollected, r.charged) for r in rows]
            if got != [("success", price, 0, price)]:
                problems.append(f"{s.request_id} ({s.model}, complete): rows {got}, expected one billed {price}")
            if books.wallet[s.request_id] != price or books.budget[s.request_id] != price:
                problems.append(
                    f"{s.request_id}: wallet {books.wallet[s.request_id]}, "
                    f"budget {books.budget[s.request_id]} != {price}"
                )
        elif s.status == 200 and [r.status for r in rows] != ["interrupted"]:  # started, cut: charged once
            problems.append(f"{s.request_id} ({s.model}, cut): rows {rows}, expected one interrupted")
    for user in users:
        charged = sum(r.charged or 0 for rows in books.rows.values() for r in rows if r.end_user_id == user.id)
        if books.used.get(user.id) != (charged, 0):
            problems.append(f"end user {user.id}: budget (used, held) {books.used.get(user.id)} != ({charged}, 0)")
    if books.active_holds:
        problems.append(f"{books.active_holds} holds still active")
    assert not problems, "\n".join(problems[:30])
    return Money(expected, ledger, checked, in_window)


def check_statuses(sent: list[Sent], allowed: set[int]) -> Counter[int]:
    """No 500 anywhere: only the statuses the fault explains, and every 503 says when to come back."""
    statuses = Counter(s.status for s in sent)
    unexplained = [(s.status, s.failure) for s in sent if s.status not in allowed]
    assert not unexplained, unexplained[:10]
    for s in sent:
        if s.status == 503:
            assert s.retry_after is not None and int(s.retry_after) >= 1, s.failure
    return statuses


def most_in_a_window(times: list[float]) -> int:
    """The largest number of ``times`` inside any 60 s interval."""
    times, most, first = sorted(times), 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= WINDOW_S:
            first += 1
        most = max(most, last - first + 1)
    return most


def admissions(books: Books, sent: list[Sent], user: EndUser) -> list[Sent]:
    """The user's requests the limiter admitted: those answered 200 or that left a usage log row."""
    return [s for s in sent if s.user == user and (s.status == 200 or s.request_id in books.rows)]


def rpm_bound(admitted: list[Sent], fault_at: float | None) -> int:
    """RPM, or with Redis lost at ``fault_at`` the documented bound Σ max(own admissions before, share)
    (docs/rate-limits.md): the instances' local shares cannot see what the other admitted through Redis."""
    if fault_at is None:
        return RPM
    share = RPM // 2
    own = Counter(s.instance for s in admitted if s.started < fault_at)
    return max(RPM, sum(max(own[i], share) for i in range(2)))
