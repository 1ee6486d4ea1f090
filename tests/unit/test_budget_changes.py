"""The budget changes management makes (SPEC §5.5, §9.5, §9.8) as pure steps: the state after, the ledger rows in
order with the webhook events each causes, and the refusals, without a database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.domain.budget_changes import (
    BIGINT_MAX,
    BudgetOverflow,
    BudgetPatch,
    BudgetRow,
    BudgetRuleViolation,
    BudgetStep,
    InsufficientBudget,
    MaxBelowMinimum,
    debited,
    opened,
    patched,
    reset_if_due,
    topped_up,
)
from tollway.domain.budgets import BudgetEvent, BudgetSpec
from tollway.domain.platform_settings import BudgetPeriod

USD = 10**9
NOW = datetime(2026, 5, 20, 17, 30, tzinfo=UTC)


def budget(**changes: object) -> BudgetRow:
    base = opened("plat", "user", BudgetSpec(10 * USD, BudgetPeriod.DAILY), NOW).budget
    return replace(base, **changes)  # type: ignore[arg-type]


def types(step: BudgetStep) -> list[tuple[str, int, tuple[BudgetEvent, ...]]]:
    return [(e.transaction["type"], e.transaction["amount_nanos"], e.events) for e in step.entries]


def test_opening_starts_the_current_period_with_one_opening_row() -> None:
    daily = opened("plat", "user", BudgetSpec(5 * USD, BudgetPeriod.DAILY), NOW)
    assert daily.budget.period_start == datetime(2026, 5, 20, tzinfo=UTC)
    assert (daily.budget.used_nanos, daily.budget.held_nanos, daily.budget.low_balance_armed) == (0, 0, True)
    assert types(daily) == [("opening_balance", 5 * USD, ())]
    assert daily.change.transaction["remaining_after_nanos"] == 5 * USD
    one_time = opened("plat", "user", BudgetSpec(5 * USD), NOW)
    assert one_time.budget.period_start == NOW


def test_topup_raises_max_re_arms_and_refuses_an_overflow() -> None:
    low = budget(used_nanos=8 * USD, low_balance_threshold_nanos=3 * USD, low_balance_armed=False)
    step = topped_up(low, 2 * USD, NOW, reason="gift", metadata={"k": "v"})
    assert (step.budget.max_nanos, step.budget.low_balance_armed) == (12 * USD, True)  # remaining 4 > 3
    assert types(step) == [("topup", 2 * USD, (BudgetEvent.TOPPED_UP,))]
    row = step.change.transaction
    assert (row["reason"], row["metadata"], row["remaining_after_nanos"]) == ("gift", {"k": "v"}, 4 * USD)
    still_low = topped_up(low, USD // 2, NOW, reason=None, metadata={})
    assert still_low.budget.low_balance_armed is False  # remaining 2.5 ≤ 3
    with pytest.raises(BudgetOverflow):
        topped_up(budget(max_nanos=BIGINT_MAX), 1, NOW, reason=None, metadata={})


def test_debit_within_available_fires_low_balance_once() -> None:
    armed = budget(held_nanos=2 * USD, low_balance_threshold_nanos=5 * USD)
    with pytest.raises(InsufficientBudget) as refused:
        debited(armed, 8 * USD + 1, NOW, reason="r", metadata={})
    assert refused.value.available_nanos == 8 * USD
    first = debited(armed, 5 * USD, NOW, reason="r", metadata={})
    assert types(first) == [("debit", -5 * USD, (BudgetEvent.DEBITED, BudgetEvent.LOW_BALANCE))]
    assert first.budget.low_balance_armed is False
    second = debited(first.budget, USD, NOW, reason="r", metadata={})
    assert types(second) == [("debit", -USD, (BudgetEvent.DEBITED,))]
    overdrawn = budget(used_nanos=9 * USD, held_nanos=3 * USD)
    with pytest.raises(InsufficientBudget) as none_left:
        debited(overdrawn, 1, NOW, reason="r", metadata={})
    assert none_left.value.available_nanos == 0  # never reported negative


def test_patch_rows_follow_what_changed() -> None:
    current = budget(used_nanos=3 * USD, held_nanos=2 * USD)
    assert types(patched(current, BudgetPatch(), NOW)) == []
    assert types(patched(current, BudgetPatch(max_nanos=7 * USD), NOW)) == [("adjustment", -3 * USD, ())]
    both = patched(current, BudgetPatch(max_nanos=12 * USD, is_suspended=True), NOW)
    assert types(both) == [("adjustment", 2 * USD, ()), ("suspend", 0, (BudgetEvent.SUSPENDED,))]
    resumed = patched(both.budget, BudgetPatch(is_suspended=False), NOW)
    assert types(resumed) == [("unsuspend", 0, (BudgetEvent.UNSUSPENDED,))]
    assert types(patched(current, BudgetPatch(is_suspended=False), NOW)) == []  # the same value writes nothing


def test_patch_refusals() -> None:
    current = budget(used_nanos=3 * USD, held_nanos=2 * USD)
    with pytest.raises(MaxBelowMinimum) as below:
        patched(current, BudgetPatch(max_nanos=5 * USD - 1), NOW)
    assert below.value.minimum_nanos == 5 * USD
    assert patched(current, BudgetPatch(max_nanos=5 * USD), NOW).budget.max_nanos == 5 * USD
    with pytest.raises(BudgetRuleViolation) as one_time:
        patched(current, BudgetPatch(period=BudgetPeriod.ONE_TIME, auto_replenish=True, replenish_nanos=USD,
                                     replenish_set=True), NOW)  # fmt: skip
    assert one_time.value.param == "auto_replenish"
    with pytest.raises(BudgetRuleViolation) as missing:
        patched(current, BudgetPatch(auto_replenish=True), NOW)
    assert missing.value.param == "replenish_amount"


def test_patch_period_and_replenishment() -> None:
    current = budget(used_nanos=3 * USD, auto_replenish=True, replenish_nanos=4 * USD)
    monthly = patched(current, BudgetPatch(period=BudgetPeriod.MONTHLY), NOW).budget
    assert (monthly.period_start, monthly.used_nanos) == (datetime(2026, 5, 1, tzinfo=UTC), 3 * USD)
    one_time = patched(budget(), BudgetPatch(period=BudgetPeriod.ONE_TIME), NOW).budget
    assert one_time.period_start == one_time.created_at
    off = patched(current, BudgetPatch(auto_replenish=False), NOW).budget
    assert (off.auto_replenish, off.replenish_nanos) == (False, None)  # turning it off drops the amount
    threshold = patched(budget(low_balance_armed=False), BudgetPatch(threshold_set=True), NOW).budget
    assert threshold.low_balance_threshold_nanos is None


def test_reset_if_due_replenishes_and_writes_one_reset_row() -> None:
    current = budget(used_nanos=6 * USD, held_nanos=USD, auto_replenish=True, replenish_nanos=4 * USD)
    assert reset_if_due(current, NOW) is None
    later = datetime(2026, 5, 23, 1, tzinfo=UTC)  # three boundaries missed: one reset
    step = reset_if_due(current, later)
    assert step is not None
    assert (step.budget.max_nanos, step.budget.used_nanos) == (4 * USD, 0)
    assert step.budget.period_start == datetime(2026, 5, 23, tzinfo=UTC)
    assert types(step) == [("reset", 0, ())]  # + used (6) + the change of max (10 -> 4)


@given(
    used=st.integers(0, 10 * USD),
    held=st.integers(0, 10 * USD),
    amount=st.integers(1, 20 * USD),
)
def test_a_debit_never_leaves_available_negative_and_rows_match_the_state(used: int, held: int, amount: int) -> None:
    current = budget(used_nanos=min(used, 10 * USD - min(held, 10 * USD)), held_nanos=min(held, 10 * USD))
    try:
        step = debited(current, amount, NOW, reason="r", metadata={})
    except InsufficientBudget:
        assert amount > current.available_nanos
        return
    after = step.budget
    assert after.available_nanos >= 0
    row = step.change.transaction
    assert row["remaining_after_nanos"] == row["max_after_nanos"] - row["used_after_nanos"] == after.remaining_nanos
    assert current.remaining_nanos + row["amount_nanos"] == after.remaining_nanos
