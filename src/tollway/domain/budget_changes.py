"""A budget as stored and every change management makes to it (SPEC §5.5, §9.5, §9.8): the state after the change,
the ledger rows it appends with the webhook events each causes, and the refusals. No I/O: the use case locks the row,
asks for the change here, then has the repository write exactly what this returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

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
from tollway.domain.ids import new_id
from tollway.domain.platform_settings import BudgetPeriod
from tollway.domain.records import Record

BIGINT_MAX: Final = 2**63 - 1


class BudgetOverflow(Exception):
    """The change would push ``max`` past what a BIGINT of n$ holds."""


class InsufficientBudget(Exception):
    """A debit larger than what is available; nothing may be written."""

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


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger row to append and the webhook events it causes (recorded in the same transaction, §9.6 inv. 8)."""

    transaction: Record
    events: tuple[BudgetEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class BudgetStep:
    """What one operation does to a locked budget: its whole state after, and the rows to append, in order."""

    budget: BudgetRow
    entries: tuple[LedgerEntry, ...]

    @property
    def change(self) -> BudgetChange:
        """The budget with the operation's last ledger row (the one its response shows)."""
        return BudgetChange(self.budget, self.entries[-1].transaction)


def ledger_row(
    after: BudgetRow,
    txn_type: BudgetTxnType,
    amount_nanos: int,
    now: datetime,
    *,
    reason: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> Record:
    """One ledger row carrying the budget's state after the change (§9.5)."""
    return {
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


def opened(platform_id: str, end_user_id: str, spec: BudgetSpec, now: datetime) -> BudgetStep:
    """A new budget and its ``opening_balance`` row (+ max). ``period_start`` is the start of the current period, or
    the creation time for ``one_time``."""
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
    return BudgetStep(budget, (LedgerEntry(ledger_row(budget, BudgetTxnType.OPENING_BALANCE, budget.max_nanos, now)),))


def reset_if_due(budget: BudgetRow, now: datetime) -> BudgetStep | None:
    """The lazy period reset (§9.8) applied under the budget's lock before any operation; None when none is due."""
    replenish = budget.replenish_nanos if budget.auto_replenish else None
    reset = plan_reset(budget.period, budget.period_start, now, budget.amounts, replenish)
    if reset is None:
        return None
    armed = armed_after_credit(budget.low_balance_threshold_nanos, reset.max_nanos, budget.low_balance_armed)
    after = replace(
        budget,
        max_nanos=reset.max_nanos,
        used_nanos=0,
        period_start=reset.period_start,
        low_balance_armed=armed,
        updated_at=now,
    )
    return BudgetStep(after, (LedgerEntry(ledger_row(after, BudgetTxnType.RESET, reset.amount_nanos, now)),))


def topped_up(
    budget: BudgetRow, amount_nanos: int, now: datetime, *, reason: str | None, metadata: Mapping[str, Any]
) -> BudgetStep:
    """Raises ``max`` by the amount (allowed while suspended or inactive); re-arms the low-balance alert (§9.8)."""
    if budget.max_nanos > BIGINT_MAX - amount_nanos:
        raise BudgetOverflow
    raised = budget.max_nanos + amount_nanos
    armed = armed_after_credit(budget.low_balance_threshold_nanos, raised - budget.used_nanos, budget.low_balance_armed)
    after = replace(budget, max_nanos=raised, low_balance_armed=armed, updated_at=now)
    row = ledger_row(after, BudgetTxnType.TOPUP, amount_nanos, now, reason=reason, metadata=metadata)
    return BudgetStep(after, (LedgerEntry(row, (BudgetEvent.TOPPED_UP,)),))


def debited(
    budget: BudgetRow, amount_nanos: int, now: datetime, *, reason: str, metadata: Mapping[str, Any]
) -> BudgetStep:
    """Raises ``used`` by the amount, at most what is available (else ``InsufficientBudget``); the row that leaves
    ``remaining ≤ threshold`` while armed also fires ``budget.low_balance`` (§9.8)."""
    if amount_nanos > budget.available_nanos:
        raise InsufficientBudget(max(0, budget.available_nanos))
    used = budget.used_nanos + amount_nanos
    armed, fires = armed_after_spend(
        budget.low_balance_threshold_nanos, budget.max_nanos - used, budget.low_balance_armed
    )
    after = replace(budget, used_nanos=used, low_balance_armed=armed, updated_at=now)
    row = ledger_row(after, BudgetTxnType.DEBIT, -amount_nanos, now, reason=reason, metadata=metadata)
    events = (BudgetEvent.DEBITED, BudgetEvent.LOW_BALANCE) if fires else (BudgetEvent.DEBITED,)
    return BudgetStep(after, (LedgerEntry(row, events),))


def patched(budget: BudgetRow, patch: BudgetPatch, now: datetime) -> BudgetStep:
    """PATCH (§5.5): a change of ``max`` writes an ``adjustment`` row and may not go below ``used + held``; a new
    ``period`` starts at the current period of its kind without resetting ``used``; a flip of ``is_suspended``
    writes a ``suspend``/``unsuspend`` row (amount 0), the same value again writes nothing."""
    after = patched_row(budget, patch, now)
    entries: list[LedgerEntry] = []
    if after.max_nanos != budget.max_nanos:
        adjustment = after.max_nanos - budget.max_nanos
        entries.append(LedgerEntry(ledger_row(after, BudgetTxnType.ADJUSTMENT, adjustment, now)))
    if after.is_suspended != budget.is_suspended:
        flip = BudgetTxnType.SUSPEND if after.is_suspended else BudgetTxnType.UNSUSPEND
        event = BudgetEvent.SUSPENDED if after.is_suspended else BudgetEvent.UNSUSPENDED
        entries.append(LedgerEntry(ledger_row(after, flip, 0, now), (event,)))
    return BudgetStep(after, tuple(entries))


def patched_row(budget: BudgetRow, patch: BudgetPatch, now: datetime) -> BudgetRow:
    """The budget's settings after a PATCH, or the refusal: ``MaxBelowMinimum``, ``BudgetRuleViolation``."""
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
