"""The ledgers' "after" amounts read as one running balance (SPEC §9.5), checked without knowing the commit order.

A reconciling platform reads a wallet's ``balance_after_nanos`` and a budget's ``max_after_nanos``,
``used_after_nanos`` and ``remaining_after_nanos`` as running amounts: in commit order, each row's "after" state is
the previous row's plus this row's effect, the first row starts from the account's opening state and the last one
ends at the account's current state. Commit order is not stored (``created_at`` of concurrent writers interleaves),
so the check is order-free and still exact:

- Each row is a move between two account states: a wallet state is its balance, a budget state its (max, used).
  The state after is on the row; the state before is the after minus the row's effect (the §9.5 table):

  | ledger | ``type`` | before |
  |---|---|---|
  | wallet | ``topup``, ``usage``, ``usage_correction`` | balance − amount |
  | budget | ``opening_balance`` | (0, 0): amount = max after, used after = 0 |
  | budget | ``topup``, ``adjustment`` | (max − amount, used) |
  | budget | ``debit``, ``inference``, ``inference_correction`` | (max, used + amount) |
  | budget | ``suspend``, ``unsuspend`` | the state after (amount 0): a loop that must sit on the path |
  | budget | ``reset`` | some state whose remaining is remaining after − amount (used after = 0) |

  A ``reset`` row does not say what ``max`` was before (replenishment may have changed it, and ``used`` before is
  only known through it), so its state before is any state of the path with that remaining.
- The rows are consistent with SOME commit order if and only if they form one path from the opening state to the
  current state that uses every row exactly once: an Eulerian path. Where the "before" states are known, that is
  the degree rule (at every state as many rows leave as arrive, except one more leaving the opening state and one
  more arriving at the current state when they differ) plus every row connected to the opening state. Each
  ``reset`` takes the one free departure its remaining allows; when several states would do, every assignment
  that keeps the degree rule is tried (there are few resets, and fewer ambiguous ones).

A wrong "after" amount, a missing or extra row, two rows whose amounts were swapped, and two writers that computed
their rows from the same state all break the path, even when the sum of the amounts (invariant 1) is right.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

State = tuple[int, ...]  # a wallet: (balance,); a budget: (max, used)

WALLET_OPENING: State = (0,)
BUDGET_OPENING: State = (0, 0)
_MOST_ASSIGNMENTS = 100_000  # of ambiguous resets to try before giving up


@dataclass(frozen=True, slots=True)
class WalletEntry:
    """The columns of a ``wallet_transactions`` row the chain reads."""

    id: str
    type: str
    amount_nanos: int
    balance_after_nanos: int


@dataclass(frozen=True, slots=True)
class BudgetEntry:
    """The columns of a ``budget_transactions`` row the chain reads."""

    id: str
    type: str
    amount_nanos: int
    max_after_nanos: int
    used_after_nanos: int
    remaining_after_nanos: int


@dataclass(frozen=True, slots=True)
class Move:
    """One row as a move between states. ``before`` is None for a reset: then any state whose remaining
    (max − used) is ``remaining_before`` will do."""

    label: str
    before: State | None
    after: State
    remaining_before: int | None = None


def wallet_problems(wallet_id: str, rows: Iterable[WalletEntry], balance_nanos: int) -> list[str]:
    """What is wrong with a wallet's ledger as a running balance from 0 to ``balance_nanos`` (empty: nothing)."""
    problems: list[str] = []
    moves: list[Move] = []
    for row in rows:
        label = f"{row.type} {row.id} ({row.amount_nanos:+d} -> {row.balance_after_nanos})"
        before = row.balance_after_nanos - row.amount_nanos
        sign_ok = {"topup": row.amount_nanos > 0, "usage": row.amount_nanos < 0}.get(row.type, row.amount_nanos != 0)
        if row.type not in ("topup", "usage", "usage_correction"):
            problems.append(f"wallet {wallet_id}: {label}: unknown type")
        elif not sign_ok:
            problems.append(f"wallet {wallet_id}: {label}: amount of the wrong sign for its type")
        if before < 0 or row.balance_after_nanos < 0:
            problems.append(f"wallet {wallet_id}: {label}: a negative balance")
        moves.append(Move(label, (before,), (row.balance_after_nanos,)))
    problems += [f"wallet {wallet_id}: {p}" for p in path_problems(moves, WALLET_OPENING, (balance_nanos,))]
    return problems


def budget_problems(budget_id: str, rows: Iterable[BudgetEntry], max_nanos: int, used_nanos: int) -> list[str]:
    """What is wrong with a budget's ledger as running (max, used) from (0, 0) to the budget's current amounts."""
    problems: list[str] = []
    moves: list[Move] = []
    for row in rows:
        move, faults = _budget_move(row)
        problems += [f"budget {budget_id}: {move.label}: {fault}" for fault in faults]
        moves.append(move)
    problems += [f"budget {budget_id}: {p}" for p in path_problems(moves, BUDGET_OPENING, (max_nanos, used_nanos))]
    return problems


def _budget_move(row: BudgetEntry) -> tuple[Move, list[str]]:
    amount, max_after, used_after = row.amount_nanos, row.max_after_nanos, row.used_after_nanos
    label = f"{row.type} {row.id} ({amount:+d} -> max {max_after} used {used_after})"
    faults: list[str] = []
    if row.remaining_after_nanos != max_after - used_after:
        faults.append(f"remaining after {row.remaining_after_nanos} is not max after - used after")
    if max_after < 0 or used_after < 0 or max_after - used_after < 0:
        faults.append("a negative max, used or remaining after")
    before: State | None
    kind = row.type
    if kind == "opening_balance":
        before = (max_after - amount, used_after)
        if before != BUDGET_OPENING:
            faults.append("an opening balance must take (0, 0) to (amount, 0)")
    elif kind in ("topup", "adjustment"):
        before = (max_after - amount, used_after)
        if (amount <= 0) if kind == "topup" else (amount == 0):
            faults.append("amount of the wrong sign for its type")
    elif kind in ("debit", "inference", "inference_correction"):
        before = (max_after, used_after + amount)
        wrong = {"debit": amount >= 0, "inference": amount > 0}.get(kind, amount == 0)
        if wrong:
            faults.append("amount of the wrong sign for its type")
    elif kind in ("suspend", "unsuspend"):
        before = (max_after, used_after)
        if amount != 0:
            faults.append("a suspend or unsuspend row moves no money")
    elif kind == "reset":
        before = None
        if used_after != 0:
            faults.append("a reset leaves used at 0")
    else:
        before = (max_after, used_after)
        faults.append("unknown type")
    if before is not None and (before[0] < 0 or before[1] < 0 or before[0] - before[1] < 0):
        faults.append(f"the state before it (max {before[0]} used {before[1]}) is negative")
    remaining_before = max_after - used_after - amount if before is None else None
    return Move(label, before, (max_after, used_after), remaining_before), faults


def path_problems(moves: Sequence[Move], start: State, end: State) -> list[str]:
    """Why the moves are not one path from ``start`` to ``end`` that uses each move once (empty: they are)."""
    fixed = [m for m in moves if m.before is not None]
    # Resets in a fixed order, so that interchangeable ones (same remaining before, same state after) are tried in
    # one order only.
    free = sorted((m for m in moves if m.before is None), key=_reset_key)
    surplus: Counter[State] = Counter()  # departures - arrivals, of the moves whose departure is known
    for move in moves:
        surplus[move.after] -= 1
    for move in fixed:
        assert move.before is not None
        surplus[move.before] += 1
    target: Counter[State] = Counter({start: 1, end: -1}) if start != end else Counter()
    states = set(surplus) | {start, end}
    # Departures still owed at each state: what the free moves (resets) must supply.
    owed = {s: target[s] - surplus[s] for s in states}
    if any(n < 0 for n in owed.values()):
        # With no resets every unbalanced state is at fault; with resets, those still owing a departure may be theirs.
        broken = sorted(s for s, n in owed.items() if n < 0 or (n > 0 and not free))
        return [_degree_fault(s, moves, start, end) for s in broken[:6]]
    tried, last_stray = 0, list[str]()
    for tails in _assignments(free, {s: n for s, n in owed.items() if n > 0}):
        tried += 1
        if tried > _MOST_ASSIGNMENTS:
            return [f"more than {_MOST_ASSIGNMENTS} ways to place the resets; cannot decide"]
        stray = _unreachable(fixed, free, tails, start, end)
        if not stray:
            return []
        last_stray = stray
    if tried == 0:
        return [_reset_fault(free, owed)]
    return [f"rows not on the path from {_show(start)} to {_show(end)}: " + "; ".join(last_stray[:5])]


def _assignments(free: Sequence[Move], owed: dict[State, int]) -> Iterator[list[State]]:
    """Every way to give each reset a departure state with its remaining, using exactly the departures owed."""
    chosen: list[State] = []
    states = sorted(owed)

    def place(i: int) -> Iterator[list[State]]:
        if i == len(free):
            yield list(chosen)
            return
        # A reset interchangeable with the previous one takes a state no earlier than it did (no mirrored retries).
        same = i > 0 and _reset_key(free[i]) == _reset_key(free[i - 1])
        for state in states[states.index(chosen[-1]) if same else 0 :]:
            if owed[state] > 0 and state[0] - state[1] == free[i].remaining_before:
                owed[state] -= 1
                chosen.append(state)
                yield from place(i + 1)
                chosen.pop()
                owed[state] += 1

    return place(0)


def _unreachable(
    fixed: Sequence[Move], free: Sequence[Move], tails: Sequence[State], start: State, end: State
) -> list[str]:
    """The moves (and the end state) not connected to ``start``: with the degree rule kept, connected is enough."""
    edges = [(m.before, m.after, m.label) for m in fixed] + [
        (t, m.after, m.label) for m, t in zip(free, tails, strict=True)
    ]
    parent: dict[State, State] = {}

    def root(state: State) -> State:
        while parent.get(state, state) != state:
            parent[state] = parent.get(parent[state], parent[state])  # path halving
            state = parent[state]
        return state

    for before, after, _ in edges:
        assert before is not None
        parent[root(before)] = root(after)
    home = root(start)
    stray = [label for before, _, label in edges if before is not None and root(before) != home]
    if root(end) != home:
        stray.append(f"the current state {_show(end)}")
    return stray


def _reset_key(move: Move) -> tuple[int, State]:
    return (move.remaining_before or 0, move.after)


def _degree_fault(state: State, moves: Sequence[Move], start: State, end: State) -> str:
    leaving = [m.label for m in moves if m.before == state]
    arriving = [m.label for m in moves if m.after == state]
    where = " (the opening state)" if state == start else " (the current state)" if state == end else ""
    needed = (state == start) - (state == end)
    return (
        f"at {_show(state)}{where} {len(leaving)} row(s) leave and {len(arriving)} arrive, one path needs "
        f"leaving - arriving = {needed}; leaving: {leaving[:4] or 'none'}, arriving: {arriving[:4] or 'none'}"
    )


def _reset_fault(free: Sequence[Move], owed: dict[State, int]) -> str:
    open_states = [_show(s) for s, n in sorted(owed.items()) if n > 0]
    resets = [f"{m.label} (from remaining {m.remaining_before})" for m in free]
    return f"no state of the path fits the reset(s) {resets[:4]}; states still to be left: {open_states[:4]}"


def _show(state: State) -> str:
    return f"balance {state[0]}" if len(state) == 1 else f"max {state[0]} used {state[1]}"
