"""Pure budget rules (SPEC §9.8): UTC period boundaries, one reset for any number of missed periods, replenishment
never below what is held, and the edge-triggered low-balance arming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.domain.budgets import (
    BudgetAmounts,
    Reset,
    armed_after_credit,
    armed_after_spend,
    due_boundary,
    minimum_max,
    next_reset_at,
    period_start_at,
    plan_reset,
    replenish_violation,
)
from tollway.domain.platform_settings import BudgetPeriod

DAILY, MONTHLY, ONE_TIME = BudgetPeriod.DAILY, BudgetPeriod.MONTHLY, BudgetPeriod.ONE_TIME


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_period_starts_are_utc_midnights() -> None:
    moment = utc(2026, 5, 20, 17, 31, 2, 123)
    assert period_start_at(DAILY, moment) == utc(2026, 5, 20)
    assert period_start_at(MONTHLY, moment) == utc(2026, 5, 1)
    assert period_start_at(ONE_TIME, moment) is None
    # Another offset: 01:30 at +02:00 is still the 19th in UTC.
    local = datetime(2026, 5, 20, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert period_start_at(DAILY, local) == utc(2026, 5, 19)
    assert period_start_at(MONTHLY, datetime(2026, 6, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))) == utc(2026, 5, 1)
    assert period_start_at(DAILY, utc(2026, 5, 20)) == utc(2026, 5, 20)  # a boundary starts its own period


@pytest.mark.parametrize(
    ("period", "start", "expected"),
    [
        (DAILY, utc(2026, 5, 20), utc(2026, 5, 21)),
        (DAILY, utc(2026, 12, 31), utc(2027, 1, 1)),
        (DAILY, utc(2028, 2, 28), utc(2028, 2, 29)),
        (MONTHLY, utc(2026, 1, 1), utc(2026, 2, 1)),
        (MONTHLY, utc(2026, 12, 1), utc(2027, 1, 1)),
        (MONTHLY, utc(2026, 2, 1), utc(2026, 3, 1)),
        (ONE_TIME, utc(2026, 5, 20, 9, 5), None),
    ],
)
def test_next_reset(period: BudgetPeriod, start: datetime, expected: datetime | None) -> None:
    assert next_reset_at(period, start) == expected


def test_due_boundary() -> None:
    start = utc(2026, 5, 20)
    assert due_boundary(DAILY, start, utc(2026, 5, 20, 23, 59, 59, 999999)) is None
    assert due_boundary(DAILY, start, utc(2026, 5, 21)) == utc(2026, 5, 21)
    # Several missed periods: one boundary, the latest.
    assert due_boundary(DAILY, start, utc(2026, 5, 24, 8)) == utc(2026, 5, 24)
    assert due_boundary(MONTHLY, utc(2026, 1, 1), utc(2026, 4, 15)) == utc(2026, 4, 1)
    assert due_boundary(MONTHLY, utc(2026, 4, 1), utc(2026, 4, 30, 23)) is None
    assert due_boundary(ONE_TIME, utc(2020, 1, 1), utc(2030, 1, 1)) is None
    # A clock that went backwards never resets.
    assert due_boundary(DAILY, start, utc(2026, 5, 19)) is None


def test_plan_reset_without_and_with_replenishment() -> None:
    amounts = BudgetAmounts(max_nanos=10, used_nanos=7, held_nanos=2)
    start, now = utc(2026, 5, 1), utc(2026, 8, 3)
    assert plan_reset(MONTHLY, start, utc(2026, 5, 31), amounts, None) is None
    assert plan_reset(MONTHLY, start, now, amounts, None) == Reset(utc(2026, 8, 1), 10, 7)
    # Replenish to 4: + used (7) + change of max (4 − 10) = 1.
    assert plan_reset(MONTHLY, start, now, amounts, 4) == Reset(utc(2026, 8, 1), 4, 1)
    # Replenish below what is held: max becomes the held amount, so available stays 0, not negative.
    assert plan_reset(MONTHLY, start, now, BudgetAmounts(10, 1, 6), 4) == Reset(utc(2026, 8, 1), 6, -3)


@given(
    max_nanos=st.integers(0, 10**12),
    used_share=st.floats(0, 1),
    held_share=st.floats(0, 1),
    replenish=st.one_of(st.none(), st.integers(1, 10**12)),
    days=st.integers(0, 1000),
)
def test_a_reset_keeps_available_non_negative_and_the_ledger_consistent(
    max_nanos: int, used_share: float, held_share: float, replenish: int | None, days: int
) -> None:
    used = int(max_nanos * used_share)
    held = int((max_nanos - used) * held_share)
    amounts = BudgetAmounts(max_nanos, used, held)
    start = utc(2026, 1, 1)
    reset = plan_reset(DAILY, start, start + timedelta(days=days, hours=5), amounts, replenish)
    if days == 0:
        assert reset is None
        return
    assert reset is not None
    after = BudgetAmounts(reset.max_nanos, 0, held)
    assert after.available_nanos >= 0
    assert amounts.remaining_nanos + reset.amount_nanos == after.remaining_nanos
    assert reset.period_start == start + timedelta(days=days)


def test_low_balance_is_edge_triggered() -> None:
    assert armed_after_spend(None, 0, True) == (True, False)  # a null threshold never fires
    assert armed_after_spend(100, 101, True) == (True, False)
    assert armed_after_spend(100, 100, True) == (False, True)  # ≤ threshold while armed: fire and disarm
    assert armed_after_spend(100, 50, False) == (False, False)  # disarmed: fires no more
    assert armed_after_spend(100, 500, False) == (False, False)  # only a credit re-arms
    assert armed_after_credit(100, 101, False) is True
    assert armed_after_credit(100, 100, False) is False
    assert armed_after_credit(100, 50, True) is True
    assert armed_after_credit(None, 10**9, False) is False


def test_minimum_max_and_replenish_rules() -> None:
    assert minimum_max(BudgetAmounts(10, 4, 3)) == 7
    assert replenish_violation(ONE_TIME, True, 5) == (
        "auto_replenish",
        "auto_replenish cannot be true for a one_time budget, which never resets.",
    )
    assert replenish_violation(DAILY, True, None) is not None
    assert replenish_violation(DAILY, True, None)[0] == "replenish_amount"  # type: ignore[index]
    assert replenish_violation(MONTHLY, False, 5)[0] == "replenish_amount"  # type: ignore[index]
    assert replenish_violation(MONTHLY, True, 5) is None
    assert replenish_violation(ONE_TIME, False, None) is None
