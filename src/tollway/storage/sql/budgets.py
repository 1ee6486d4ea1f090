"""End-user budgets and their append-only ledger (SPEC §5.5, §9.5, §9.8): every balance change and its ledger row
in one transaction, with the budget row locked (PostgreSQL ``FOR UPDATE``; SQLite transactions already hold the
write lock from ``BEGIN IMMEDIATE``). A period reset that is due is applied under that lock before the operation.

The functions taking an ``AsyncConnection`` run inside the caller's transaction, so that an idempotency record
commits with the ledger rows (§9.7). Inference holds and settlements do not come here: the money writer's batches
(``money_batch.py``) apply them, with the same reset and low-balance rules of ``domain/budgets.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.domain.budgets import (
    BudgetAmounts,
    BudgetEvent,
    BudgetSpec,
    BudgetTxnType,
    armed_after_credit,
    armed_after_spend,
    minimum_max,
    next_reset_at,
    period_start_at,
    plan_reset,
    replenish_violation,
)
from tollway.domain.clock import as_utc
from tollway.domain.ids import new_id
from tollway.domain.platform_settings import BudgetPeriod
from tollway.domain.webhooks import budget_data
from tollway.storage.sql import outbox
from tollway.storage.sql.db import reader
from tollway.storage.sql.paging import Record, ledger_page
from tollway.storage.sql.tables import budget_transactions, budgets, end_users, webhook_deliveries, webhook_events

BIGINT_MAX: Final = 2**63 - 1
_RESET_SCAN_BATCH: Final = 500


class BudgetExists(Exception):
    """The end user already has a budget (one per end user)."""


class BudgetOverflow(Exception):
    """The change would push ``max`` past what a BIGINT of n$ holds."""


class InsufficientBudget(Exception):
    """A debit larger than what is available; nothing was written."""

    def __init__(self, available_nanos: int) -> None:
        super().__init__(available_nanos)
        self.available_nanos = available_nanos


class MaxBelowMinimum(Exception):
    """PATCH ``max`` below ``used + held``."""

    def __init__(self, minimum_nanos: int) -> None:
        super().__init__(minimum_nanos)
        self.minimum_nanos = minimum_nanos


class BudgetRuleViolation(Exception):
    """The settings after a PATCH break a rule of §5.5 (replenishment); ``param`` names the field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """A budget as stored (n$). ``remaining = max − used``; ``available = remaining − held`` (never negative)."""

    id: str
    platform_id: str
    end_user_id: str
    max_nanos: int
    used_nanos: int
    held_nanos: int
    period: BudgetPeriod
    period_start: datetime
    auto_replenish: bool
    replenish_nanos: int | None
    low_balance_threshold_nanos: int | None
    low_balance_armed: bool
    is_active: bool
    is_suspended: bool
    created_at: datetime
    updated_at: datetime

    @property
    def amounts(self) -> BudgetAmounts:
        return BudgetAmounts(self.max_nanos, self.used_nanos, self.held_nanos)

    @property
    def remaining_nanos(self) -> int:
        return self.max_nanos - self.used_nanos

    @property
    def available_nanos(self) -> int:
        return self.max_nanos - self.used_nanos - self.held_nanos

    @property
    def next_reset_at(self) -> datetime | None:
        return next_reset_at(self.period, self.period_start)


@dataclass(frozen=True, slots=True)
class BudgetChange:
    """A committed (or about to commit) change: the budget after it and the ledger row it wrote."""

    budget: BudgetRow
    transaction: Record


@dataclass(frozen=True, slots=True)
class BudgetPatch:
    """The fields present in a PATCH; ``*_set`` tells a nullable field given as null from one left out."""

    max_nanos: int | None = None
    period: BudgetPeriod | None = None
    auto_replenish: bool | None = None
    replenish_nanos: int | None = None
    replenish_set: bool = False
    low_balance_threshold_nanos: int | None = None
    threshold_set: bool = False
    is_suspended: bool | None = None
    is_active: bool | None = None


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


# -- locking and the lazy period reset ------------------------------------------------------------------------


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


async def _lock(conn: AsyncConnection, query: sa.Select[Any], now: datetime) -> BudgetRow | None:
    row = (await conn.execute(query.with_for_update(of=budgets))).first()
    if row is None:
        return None
    return await _reset_if_due(conn, budget_row(row._mapping), now)


async def lock_managed_budget(
    conn: AsyncConnection, platform_id: str, end_user_id: str, now: datetime
) -> BudgetRow | None:
    """Inside the caller's transaction: lock the budget of a live end user of this platform (active or not) and
    apply a due reset; None when the end user is unknown, deleted or has no budget."""
    return await _lock(conn, _managed(platform_id, end_user_id), now)


async def _reset_if_due(conn: AsyncConnection, budget: BudgetRow, now: datetime) -> BudgetRow:
    replenish = budget.replenish_nanos if budget.auto_replenish else None
    reset = plan_reset(budget.period, budget.period_start, now, budget.amounts, replenish)
    if reset is None:
        return budget
    armed = armed_after_credit(budget.low_balance_threshold_nanos, reset.max_nanos, budget.low_balance_armed)
    after = replace(
        budget,
        max_nanos=reset.max_nanos,
        used_nanos=0,
        period_start=reset.period_start,
        low_balance_armed=armed,
        updated_at=now,
    )
    await _write(conn, after)
    await _append(conn, after, BudgetTxnType.RESET, reset.amount_nanos, now)
    return after


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


async def _append(
    conn: AsyncConnection,
    after: BudgetRow,
    txn_type: BudgetTxnType,
    amount_nanos: int,
    now: datetime,
    *,
    reason: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> Record:
    """Appends one ledger row carrying the budget's state after the change (§9.5)."""
    txn = {
        "id": new_id(),
        "budget_id": after.id,
        "platform_id": after.platform_id,
        "end_user_id": after.end_user_id,
        "type": txn_type.value,
        "amount_nanos": amount_nanos,
        "max_after_nanos": after.max_nanos,
        "used_after_nanos": after.used_nanos,
        "remaining_after_nanos": after.remaining_nanos,
        "reason": reason,
        "metadata": dict(metadata or {}),
        "request_id": request_id,
        "created_at": now,
    }
    await conn.execute(sa.insert(budget_transactions).values(txn))
    return txn


# -- operations inside the caller's transaction ---------------------------------------------------------------


async def create_budget(
    conn: AsyncConnection, platform_id: str, end_user_id: str, spec: BudgetSpec, now: datetime
) -> BudgetChange:
    """Inserts the budget and its ``opening_balance`` row (+ max). ``period_start`` is the start of the current
    period, or the creation time for ``one_time``. A second budget for the end user violates the unique index."""
    budget = BudgetRow(
        id=new_id(),
        platform_id=platform_id,
        end_user_id=end_user_id,
        max_nanos=spec.max_nanos,
        used_nanos=0,
        held_nanos=0,
        period=spec.period,
        period_start=period_start_at(spec.period, now) or now,
        auto_replenish=spec.auto_replenish,
        replenish_nanos=spec.replenish_nanos,
        low_balance_threshold_nanos=spec.low_balance_threshold_nanos,
        low_balance_armed=True,
        is_active=True,
        is_suspended=False,
        created_at=now,
        updated_at=now,
    )
    values = {
        "id": budget.id,
        "platform_id": platform_id,
        "end_user_id": end_user_id,
        "max_nanos": budget.max_nanos,
        "used_nanos": 0,
        "held_nanos": 0,
        "period": budget.period.value,
        "period_start": budget.period_start,
        "auto_replenish": budget.auto_replenish,
        "replenish_nanos": budget.replenish_nanos,
        "low_balance_threshold_nanos": budget.low_balance_threshold_nanos,
        "low_balance_armed": True,
        "is_active": True,
        "is_suspended": False,
        "created_at": now,
        "updated_at": now,
    }
    await conn.execute(sa.insert(budgets).values(values))
    txn = await _append(conn, budget, BudgetTxnType.OPENING_BALANCE, budget.max_nanos, now)
    return BudgetChange(budget, txn)


async def topup(
    conn: AsyncConnection,
    platform_id: str,
    end_user_id: str,
    amount_nanos: int,
    now: datetime,
    *,
    reason: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> BudgetChange | None:
    """Raises ``max`` by the amount (works while suspended or inactive); None when there is no such budget."""
    budget = await lock_managed_budget(conn, platform_id, end_user_id, now)
    if budget is None:
        return None
    if budget.max_nanos > BIGINT_MAX - amount_nanos:
        raise BudgetOverflow
    raised = budget.max_nanos + amount_nanos
    armed = armed_after_credit(budget.low_balance_threshold_nanos, raised - budget.used_nanos, budget.low_balance_armed)
    after = replace(budget, max_nanos=raised, low_balance_armed=armed, updated_at=now)
    await _write(conn, after)
    txn = await _append(conn, after, BudgetTxnType.TOPUP, amount_nanos, now, reason=reason, metadata=metadata)
    await record_events(conn, after, txn, [BudgetEvent.TOPPED_UP])
    return BudgetChange(after, txn)


async def debit(
    conn: AsyncConnection,
    platform_id: str,
    end_user_id: str,
    amount_nanos: int,
    now: datetime,
    *,
    reason: str,
    metadata: Mapping[str, Any] | None = None,
) -> BudgetChange | None:
    """Raises ``used`` by the amount, at most what is available (else ``InsufficientBudget``; the caller's rollback
    then also undoes a reset applied by the lock, so nothing is written)."""
    budget = await lock_managed_budget(conn, platform_id, end_user_id, now)
    if budget is None:
        return None
    if amount_nanos > budget.available_nanos:
        raise InsufficientBudget(max(0, budget.available_nanos))
    used = budget.used_nanos + amount_nanos
    armed, fires = armed_after_spend(
        budget.low_balance_threshold_nanos, budget.max_nanos - used, budget.low_balance_armed
    )
    after = replace(budget, used_nanos=used, low_balance_armed=armed, updated_at=now)
    await _write(conn, after)
    txn = await _append(conn, after, BudgetTxnType.DEBIT, -amount_nanos, now, reason=reason, metadata=metadata)
    await record_events(conn, after, txn, _spend_events(fires))
    return BudgetChange(after, txn)


def _spend_events(low_balance_fires: bool) -> list[BudgetEvent]:
    return [BudgetEvent.DEBITED, BudgetEvent.LOW_BALANCE] if low_balance_fires else [BudgetEvent.DEBITED]


async def update(
    conn: AsyncConnection, platform_id: str, end_user_id: str, patch: BudgetPatch, now: datetime
) -> BudgetRow | None:
    """PATCH (§5.5): a change of ``max`` writes an ``adjustment`` row and may not go below ``used + held``; a new
    ``period`` starts at the current period of its kind without resetting ``used``; a flip of ``is_suspended``
    writes a ``suspend``/``unsuspend`` row (amount 0), the same value again writes nothing."""
    budget = await lock_managed_budget(conn, platform_id, end_user_id, now)
    if budget is None:
        return None
    after = _patched(budget, patch, now)
    await _write(conn, after)
    if after.max_nanos != budget.max_nanos:
        await _append(conn, after, BudgetTxnType.ADJUSTMENT, after.max_nanos - budget.max_nanos, now)
    if after.is_suspended != budget.is_suspended:
        flip = BudgetTxnType.SUSPEND if after.is_suspended else BudgetTxnType.UNSUSPEND
        txn = await _append(conn, after, flip, 0, now)
        event = BudgetEvent.SUSPENDED if after.is_suspended else BudgetEvent.UNSUSPENDED
        await record_events(conn, after, txn, [event])
    return after


def _patched(budget: BudgetRow, patch: BudgetPatch, now: datetime) -> BudgetRow:
    max_nanos = budget.max_nanos if patch.max_nanos is None else patch.max_nanos
    if max_nanos != budget.max_nanos and max_nanos < minimum_max(budget.amounts):
        raise MaxBelowMinimum(minimum_max(budget.amounts))
    period, period_start = budget.period, budget.period_start
    if patch.period is not None and patch.period is not budget.period:
        period = patch.period
        period_start = period_start_at(period, now) or budget.created_at
    auto = budget.auto_replenish if patch.auto_replenish is None else patch.auto_replenish
    # Turning auto-replenish off drops the stored amount; "required iff" is then checked on the result.
    replenish = patch.replenish_nanos if patch.replenish_set else (budget.replenish_nanos if auto else None)
    violation = replenish_violation(period, auto, replenish)
    if violation is not None:
        raise BudgetRuleViolation(*violation)
    threshold = patch.low_balance_threshold_nanos if patch.threshold_set else budget.low_balance_threshold_nanos
    armed = armed_after_credit(threshold, max_nanos - budget.used_nanos, budget.low_balance_armed)
    return replace(
        budget,
        max_nanos=max_nanos,
        period=period,
        period_start=period_start,
        auto_replenish=auto,
        replenish_nanos=replenish,
        low_balance_threshold_nanos=threshold,
        low_balance_armed=armed,
        is_suspended=budget.is_suspended if patch.is_suspended is None else patch.is_suspended,
        is_active=budget.is_active if patch.is_active is None else patch.is_active,
        updated_at=now,
    )


async def _locked_by_id(conn: AsyncConnection, budget_id: str) -> BudgetRow:
    row = (await conn.execute(sa.select(budgets).where(budgets.c.id == budget_id).with_for_update())).first()
    if row is None:
        raise LookupError(f"no budget {budget_id}")
    return budget_row(row._mapping)


# -- background job -------------------------------------------------------------------------------------------


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
                locked = await _locked_by_id(conn, budget_id)
                if (await _reset_if_due(conn, locked, now)) is not locked:
                    count += 1
        if len(ids) < _RESET_SCAN_BATCH:
            return count
        after_id = ids[-1]


# -- the store: own transactions for reads and creation -------------------------------------------------------


class BudgetStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    async def create(self, platform_id: str, end_user_id: str, spec: BudgetSpec, now: datetime) -> BudgetChange | None:
        """None when the end user is unknown or deleted; ``BudgetExists`` when it has a budget already."""
        try:
            async with self._engine.begin() as conn:
                live = sa.select(end_users.c.id).where(
                    end_users.c.id == end_user_id,
                    end_users.c.platform_id == platform_id,
                    end_users.c.deleted_at.is_(None),
                )
                if (await conn.execute(live)).first() is None:
                    return None
                existing = sa.select(budgets.c.id).where(budgets.c.end_user_id == end_user_id)
                if (await conn.execute(existing)).first() is not None:
                    raise BudgetExists
                return await create_budget(conn, platform_id, end_user_id, spec, now)
        except sa.exc.IntegrityError as exc:  # a concurrent create won the unique index
            raise BudgetExists from exc

    async def get(self, platform_id: str, end_user_id: str, now: datetime) -> BudgetRow | None:
        """The current budget; a due reset is applied (and committed) first, so reads never show a stale period."""
        async with self._reader.connect() as conn:
            row = (await conn.execute(_managed(platform_id, end_user_id))).first()
        if row is None:
            return None
        budget = budget_row(row._mapping)
        replenish = budget.replenish_nanos if budget.auto_replenish else None
        if plan_reset(budget.period, budget.period_start, now, budget.amounts, replenish) is None:
            return budget
        async with self._engine.begin() as conn:
            return await lock_managed_budget(conn, platform_id, end_user_id, now)

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
