"""Budget rules without I/O (SPEC §5.5, §9.5, §9.8): period boundaries in UTC, the due period reset (one reset for any
number of missed periods), replenishment, and the edge-triggered low-balance arming.

All amounts are n$. A budget's ``remaining = max − used`` and ``available = remaining − held``; nothing here may
leave ``available`` negative, which is also the database's last CHECK (§9.6 invariant 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from tollway.domain.platform_settings import BudgetPeriod


class BudgetTxnType(StrEnum):
    """Ledger row types of a budget (§9.5)."""

    OPENING_BALANCE = "opening_balance"
    TOPUP = "topup"
    DEBIT = "debit"
    INFERENCE = "inference"
    INFERENCE_CORRECTION = "inference_correction"  # a late charge's difference (storage/money/late.py)
    RESET = "reset"
    ADJUSTMENT = "adjustment"
    SUSPEND = "suspend"
    UNSUSPEND = "unsuspend"


class BudgetEvent(StrEnum):
    """Webhook event types a budget change can cause (§11.1)."""

    TOPPED_UP = "budget.topped_up"
    LOW_BALANCE = "budget.low_balance"
    SUSPENDED = "budget.suspended"
    UNSUSPENDED = "budget.unsuspended"
    DEBITED = "budget.debited"


def period_start_at(period: BudgetPeriod, moment: datetime) -> datetime | None:
    """The start of the period of kind ``period`` that contains ``moment``: 00:00 UTC of its day (daily) or of the
    1st of its month (monthly); None for ``one_time``, whose only period starts at the budget's creation."""
    utc = moment.astimezone(UTC)
    if period is BudgetPeriod.DAILY:
        return utc.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is BudgetPeriod.MONTHLY:
        return utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


def next_reset_at(period: BudgetPeriod, period_start: datetime) -> datetime | None:
    """The boundary that ends the period starting at ``period_start`` (None for ``one_time``)."""
    start = period_start_at(period, period_start)
    if start is None:
        return None
    if period is BudgetPeriod.DAILY:
        return start + timedelta(days=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def due_boundary(period: BudgetPeriod, period_start: datetime, now: datetime) -> datetime | None:
    """The latest boundary at or before ``now`` when it lies after ``period_start``, i.e. a reset is due; None when
    the budget is still in its period. Several missed periods give one boundary: the latest."""
    latest = period_start_at(period, now)
    if latest is None or latest <= period_start:
        return None
    return latest


@dataclass(frozen=True, slots=True)
class BudgetAmounts:
    max_nanos: int
    used_nanos: int
    held_nanos: int

    @property
    def remaining_nanos(self) -> int:
        return self.max_nanos - self.used_nanos

    @property
    def available_nanos(self) -> int:
        return self.max_nanos - self.used_nanos - self.held_nanos


@dataclass(frozen=True, slots=True)
class Reset:
    """What a due reset does: the new period start and ``max``, ``used`` back to 0, and the ``reset`` row's amount
    (+ used before the reset + the change of max by replenishment, §9.5)."""

    period_start: datetime
    max_nanos: int
    amount_nanos: int


def plan_reset(
    period: BudgetPeriod,
    period_start: datetime,
    now: datetime,
    amounts: BudgetAmounts,
    replenish_nanos: int | None,
) -> Reset | None:
    """The reset due at ``now``, or None. ``replenish_nanos`` (auto-replenish on) sets the new max, raised to the
    amount held if that is larger, so that ``available`` stays ≥ 0 with the holds still in force (§9.8)."""
    boundary = due_boundary(period, period_start, now)
    if boundary is None:
        return None
    new_max = amounts.max_nanos if replenish_nanos is None else max(replenish_nanos, amounts.held_nanos)
    return Reset(boundary, new_max, amounts.used_nanos + new_max - amounts.max_nanos)


def armed_after_spend(threshold_nanos: int | None, remaining_after: int, armed: bool) -> tuple[bool, bool]:
    """A debit or inference row: ``(armed, fires)``. ``budget.low_balance`` fires once, from the row that leaves
    ``remaining ≤ threshold`` while armed, and disarms; a null threshold never fires (§9.8)."""
    if threshold_nanos is not None and armed and remaining_after <= threshold_nanos:
        return False, True
    return armed, False


def armed_after_credit(threshold_nanos: int | None, remaining_after: int, armed: bool) -> bool:
    """A topup, reset or PATCH re-arms when it leaves ``remaining`` above the threshold; otherwise nothing changes."""
    if threshold_nanos is not None and remaining_after > threshold_nanos:
        return True
    return armed


def minimum_max(amounts: BudgetAmounts) -> int:
    """The smallest ``max`` a PATCH may set: what is used plus what is held."""
    return amounts.used_nanos + amounts.held_nanos


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """The values a budget is created with (POST …/budget, or the platform's ``default_budget``)."""

    max_nanos: int
    period: BudgetPeriod = BudgetPeriod.ONE_TIME
    auto_replenish: bool = False
    replenish_nanos: int | None = None
    low_balance_threshold_nanos: int | None = None


def replenish_violation(
    period: BudgetPeriod, auto_replenish: bool, replenish_nanos: int | None
) -> tuple[str, str] | None:
    """``(param, message)`` when the combination breaks §5.5: ``replenish_amount`` is required iff ``auto_replenish``,
    and a ``one_time`` budget never resets, so it cannot replenish."""
    if auto_replenish and period is BudgetPeriod.ONE_TIME:
        return "auto_replenish", "auto_replenish cannot be true for a one_time budget, which never resets."
    if auto_replenish and replenish_nanos is None:
        return "replenish_amount", "replenish_amount is required when auto_replenish is true."
    if not auto_replenish and replenish_nanos is not None:
        return "replenish_amount", "replenish_amount can be set only when auto_replenish is true."
    return None
