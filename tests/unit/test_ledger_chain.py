"""The ledger chain check (tests/support/ledger_chain.py) on hand-built ledgers: the ones a correct writer leaves, in
any order, pass; a wrong "after" amount, a missing row, a swapped pair and two rows claiming one step fail."""

from __future__ import annotations

import itertools
import random

import pytest

from tests.support.ledger_chain import BudgetEntry, Move, WalletEntry, budget_problems, path_problems, wallet_problems

_ids = itertools.count(1)


def w(kind: str, amount: int, after: int) -> WalletEntry:
    return WalletEntry(f"w{next(_ids)}", kind, amount, after)


def b(kind: str, amount: int, max_after: int, used_after: int, remaining: int | None = None) -> BudgetEntry:
    left = max_after - used_after if remaining is None else remaining
    return BudgetEntry(f"b{next(_ids)}", kind, amount, max_after, used_after, left)


def shuffled(rows: list[WalletEntry] | list[BudgetEntry], seed: int) -> list[WalletEntry | BudgetEntry]:
    copy: list[WalletEntry | BudgetEntry] = list(rows)
    random.Random(seed).shuffle(copy)
    return copy


WALLET = [
    w("topup", 1_000, 1_000),
    w("usage", -300, 700),
    w("usage", -200, 500),
    w("topup", 250, 750),
    w("usage", -300, 450),  # the same amount as an earlier row, from another state
    w("usage_correction", 40, 490),  # a late charge giving back what a checkpoint over-took
    w("usage_correction", -15, 475),
]

BUDGET = [
    b("opening_balance", 1_000, 1_000, 0),
    b("inference", -300, 1_000, 300),
    b("inference", 0, 1_000, 300),  # nothing could be charged: a loop on the path
    b("suspend", 0, 1_000, 300),
    b("topup", 500, 1_500, 300),
    b("unsuspend", 0, 1_500, 300),
    b("debit", -100, 1_500, 400),
    b("reset", 400 + 800 - 1_500, 800, 0),  # used 400 back, max replenished from 1,500 to 800
    b("adjustment", 200, 1_000, 0),
    b("inference", -700, 1_000, 700),
    b("inference_correction", 50, 1_000, 650),
    b("reset", 650, 1_000, 0),  # no replenishment: max unchanged
    b("adjustment", -250, 750, 0),
]


@pytest.mark.parametrize("seed", range(5))
def test_a_correct_wallet_ledger_passes_in_any_order(seed: int) -> None:
    assert wallet_problems("w", shuffled(WALLET, seed), 475) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(5))
def test_a_correct_budget_ledger_passes_in_any_order(seed: int) -> None:
    assert budget_problems("b", shuffled(BUDGET, seed), 750, 0) == []  # type: ignore[arg-type]


def test_empty_ledgers_pass_only_at_the_opening_state() -> None:
    assert wallet_problems("w", [], 0) == []
    assert budget_problems("b", [], 0, 0) == []
    assert wallet_problems("w", [], 5) != []
    assert budget_problems("b", [], 10, 0) != []


def test_concurrent_writers_interleaving_is_one_path() -> None:
    """Two writers' rows whose created_at interleave out of commit order still pass: the order is not read."""
    rows = [w("topup", 100, 100), w("usage", -20, 70), w("usage", -10, 90), w("usage", -30, 40)]
    assert wallet_problems("w", rows, 40) == []


def test_a_wrong_after_amount_fails() -> None:
    rows = [*WALLET[:2], w("usage", -200, 501), *WALLET[3:]]
    assert wallet_problems("w", rows, 475) != []
    budget = [*BUDGET[:6], b("debit", -100, 1_500, 401), *BUDGET[7:]]
    assert budget_problems("b", budget, 750, 0) != []


def test_a_wrong_last_after_amount_fails() -> None:
    """The last row is judged against the account's current state."""
    assert wallet_problems("w", WALLET, 476) != []
    assert budget_problems("b", BUDGET, 750, 1) != []


def test_a_missing_row_fails() -> None:
    for i in range(len(WALLET)):
        assert wallet_problems("w", WALLET[:i] + WALLET[i + 1 :], 475) != [], i
    for i in range(len(BUDGET)):
        if BUDGET[i].amount_nanos != 0:  # a loop missing leaves the path whole (and the amounts too)
            assert budget_problems("b", BUDGET[:i] + BUDGET[i + 1 :], 750, 0) != [], i


def test_a_swapped_pair_fails() -> None:
    """Two rows with each other's after amounts (the sums still agree)."""
    first, second = WALLET[1], WALLET[2]
    rows = [
        WALLET[0],
        WalletEntry(first.id, first.type, first.amount_nanos, second.balance_after_nanos),
        WalletEntry(second.id, second.type, second.amount_nanos, first.balance_after_nanos),
        *WALLET[3:],
    ]
    assert wallet_problems("w", rows, 475) != []
    one, two = b("inference", -100, 1_000, 100), b("inference", -300, 1_000, 400)
    swapped = [
        b("opening_balance", 1_000, 1_000, 0),
        BudgetEntry(one.id, one.type, one.amount_nanos, 1_000, 400, 600),
        BudgetEntry(two.id, two.type, two.amount_nanos, 1_000, 100, 900),
    ]
    assert budget_problems("b", [b("opening_balance", 1_000, 1_000, 0), one, two], 1_000, 400) == []
    assert budget_problems("b", swapped, 1_000, 400) != []


def test_two_rows_claiming_the_same_step_fail() -> None:
    """Two writers that both charged from balance 1,000: the sum of the amounts is right, the chain is not."""
    rows = [w("topup", 1_000, 1_000), w("usage", -100, 900), w("usage", -100, 900)]
    assert sum(r.amount_nanos for r in rows) == 800
    problems = wallet_problems("w", rows, 800)
    assert any("at balance 900" in p for p in problems), problems
    budget = [b("opening_balance", 1_000, 1_000, 0), b("inference", -100, 1_000, 100), b("inference", -100, 1_000, 100)]
    assert budget_problems("b", budget, 1_000, 200) != []


def test_a_loop_off_the_path_fails() -> None:
    """A suspend row at a state the budget never was in."""
    rows = [b("opening_balance", 1_000, 1_000, 0), b("suspend", 0, 1_000, 5)]
    problems = budget_problems("b", rows, 1_000, 0)
    assert problems and "suspend" in problems[0]


def test_a_reset_needs_a_state_with_its_remaining() -> None:
    good = [b("opening_balance", 1_000, 1_000, 0), b("inference", -300, 1_000, 300), b("reset", 300, 1_000, 0)]
    assert budget_problems("b", good, 1_000, 0) == []
    wrong = [*good[:2], b("reset", 299, 1_000, 0)]  # claims used was 299
    assert budget_problems("b", wrong, 1_000, 0) != []
    replenished = [*good[:2], b("reset", 300 - 500, 500, 0)]  # max from 1,000 to 500, used 300 back
    assert budget_problems("b", replenished, 500, 0) == []
    assert budget_problems("b", [*good[:2], b("reset", 300, 1_000, 1)], 1_000, 1) != []  # used not zeroed


def test_resets_with_the_same_remaining_are_placed_by_trying() -> None:
    """Both resets leave from a state with remaining 700; either placement makes one path."""
    rows = [
        b("opening_balance", 1_000, 1_000, 0),
        b("debit", -300, 1_000, 300),
        b("reset", 300, 1_000, 0),
        b("adjustment", -300, 700, 0),
        b("reset", 0, 700, 0),
    ]
    assert budget_problems("b", rows, 700, 0) == []
    assert budget_problems("b", rows, 1_000, 0) != []


def test_per_row_rules() -> None:
    opening = b("opening_balance", 1_000, 1_000, 0)
    assert budget_problems("b", [opening, b("topup", 0, 1_000, 0)], 1_000, 0) != []
    assert budget_problems("b", [opening, b("debit", 50, 1_000, -50)], 1_000, -50) != []
    assert budget_problems("b", [opening, b("suspend", 5, 1_005, 0)], 1_005, 0) != []
    assert budget_problems("b", [opening, b("refund", 5, 1_000, 0)], 1_000, 0) != []
    assert budget_problems("b", [b("opening_balance", 1_000, 1_000, 0, remaining=999)], 1_000, 0) != []
    assert budget_problems("b", [b("opening_balance", 900, 1_000, 100)], 1_000, 100) != []
    assert wallet_problems("w", [w("usage", 100, 100)], 100) != []  # usage must take money
    assert wallet_problems("w", [w("topup", 100, 100), w("usage", -150, -50)], -50) != []


def test_a_separate_cycle_is_off_the_path() -> None:
    """Degrees balance, but two rows loop between states the path never visits."""
    moves = [Move("a", (0,), (10,)), Move("x", (50,), (40,)), Move("y", (40,), (50,))]
    problems = path_problems(moves, (0,), (10,))
    assert problems and "x" in problems[0] and "y" in problems[0]
    assert path_problems(moves[:1], (0,), (10,)) == []


def test_interchangeable_resets_from_states_of_equal_remaining() -> None:
    """Forty resets that each could leave from either of two states with remaining 90 (a debit of 10, or max
    lowered by 10): decided without trying their orderings."""
    rows = [b("opening_balance", 100, 100, 0)]
    for _ in range(20):
        rows += [b("debit", -10, 100, 10), b("reset", 10, 100, 0)]  # used 10 back
        rows += [b("adjustment", -10, 90, 0), b("reset", 10, 100, 0)]  # max replenished from 90 to 100
    assert budget_problems("b", shuffled(rows, 7), 100, 0) == []  # type: ignore[arg-type]
    assert budget_problems("b", rows[:-1], 90, 0) == []
    assert budget_problems("b", [*rows, b("reset", 11, 100, 0)], 100, 0) != []


def test_a_long_ledger_is_checked_quickly() -> None:
    balance, rows = 0, []
    for i in range(20_000):
        amount = 1_000 if i % 3 == 0 else -(i % 7) - 1
        amount = amount if balance + amount >= 0 else 500
        balance += amount
        rows.append(w("topup" if amount > 0 else "usage", amount, balance))
    assert wallet_problems("w", shuffled(rows, 1), balance) == []  # type: ignore[arg-type]
    rows[10_000] = w(rows[10_000].type, rows[10_000].amount_nanos, rows[10_000].balance_after_nanos + 1)
    assert wallet_problems("w", rows, balance) != []
