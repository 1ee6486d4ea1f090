"""Late charges (SPEC §9.4): a settlement that commits after the hold sweeper resolved its hold.

A journaled settlement can reach the database after its hold expired. The sweeper then either released the hold
with a zero-cost ``error``/``hold_expired`` log row (status ``expired``), or captured it from a streaming checkpoint
as ``interrupted`` (status ``captured``, with a wallet ``usage`` row and a budget ``inference`` row for what the
checkpoint showed). The late settlement still charges what the call really cost, exactly once per request id:

- What the request has already paid is read from its ledger rows (the sweeper's, if any). The wallet is brought to
  ``min(cost, already taken + available)`` and the budget to ``min(charge, already charged + available)``: the
  same "as far as it goes" rule as an over-hold settlement, and the raw cost not collected is ``uncollected``.
- The difference is ONE new row per ledger (invariant 4: corrections are new rows; invariant 3 allows one ``usage``
  and one ``inference`` row per request id): of type ``usage``/``inference`` when the request has none yet (the
  sweeper released the hold, or took nothing), else ``usage_correction``/``inference_correction``, whose amount may
  be positive when the checkpoint over-estimated the call. So invariant 6 reads: the log row's ``cost −
  uncollected`` is minus the sum of the request's wallet rows, its ``charged`` minus the sum of its budget rows.
- The sweeper's log row for the request is deleted and the settlement's own row written (replaced; rows of failed
  attempts stay); an ``expired`` hold becomes ``captured``, since it was charged after all.

Exactly once: a settlement's usage-log row has its hold's id as id (``Batch.settle``), so a hold whose row exists
was settled already (a retry after a commit whose answer was lost, a journal replayed twice, an entry adopted by
two instances): the settlement is a no-op. The hold row is locked (on PostgreSQL ``FOR NO KEY UPDATE``) before these
reads, so two late settlements of one hold serialise and the second sees the first's row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tollway.domain.budgets import armed_after_spend
from tollway.domain.holds import MoneyCommand, Recover, Settlement

if TYPE_CHECKING:
    from tollway.storage.money.batch import Batch

WALLET_CORRECTION = "usage_correction"
BUDGET_CORRECTION = "inference_correction"

# The sweeper's rows a late settlement replaces: its ``hold_expired`` row, or its settled (non-error) row. Rows of
# failed attempts (``error`` with another code) are the request's history and stay.
DELETE_SWEPT_LOGS = (
    "DELETE FROM usage_logs WHERE request_id = :request_id AND id <> :id"
    " AND (status <> 'error' OR error_code = 'hold_expired')"
)
_SETTLED = "SELECT id FROM usage_logs WHERE id IN (:ids)"
# One branch per row type, so that each reads the partial index of its type (tables.py) instead of scanning.
_WALLET_PAID = (
    "SELECT request_id, type, amount_nanos FROM wallet_transactions WHERE request_id IN (:ids) AND type = 'usage'"
    " UNION ALL SELECT request_id, type, amount_nanos FROM wallet_transactions"
    " WHERE request_id IN (:ids) AND type = 'usage_correction'"
)
_BUDGET_PAID = (
    "SELECT request_id, type, amount_nanos FROM budget_transactions WHERE request_id IN (:ids) AND type = 'inference'"
    " UNION ALL SELECT request_id, type, amount_nanos FROM budget_transactions"
    " WHERE request_id IN (:ids) AND type = 'inference_correction'"
)


@dataclass(slots=True)
class Paid:
    """What a request's ledger rows already hold: the sums, and whether its ``usage``/``inference`` row exists."""

    taken: int = 0
    charged: int = 0
    has_usage_row: bool = False
    has_inference_row: bool = False


@dataclass(slots=True)
class LateState:
    settled: set[str]  # holds whose settlement row exists: settled already
    paid: dict[str, Paid]  # by request id


def load(batch: Batch, commands: list[MoneyCommand]) -> LateState | None:
    """Read what the late settlements of the batch need (nothing when every settled hold is still active)."""
    held = [
        batch.holds[c.hold_id] for c in commands if isinstance(c, Settlement | Recover) and c.hold_id in batch.holds
    ]
    late = [hold for hold in held if hold.status != "active"]
    if not late:
        return None
    sql, conn = batch.sql, batch.conn
    text, params = sql.any_of(_SETTLED, {"ids": sorted({h.id for h in late})})
    settled = {r[0] for r in sql.execute(conn, text, params)}
    request_ids = {"ids": sorted({h.request_id for h in late})}
    paid: dict[str, Paid] = {h.request_id: Paid() for h in late}
    text, params = sql.any_of(_WALLET_PAID, request_ids)
    for request_id, kind, amount in sql.execute(conn, text, params):
        paid[request_id].taken -= int(amount)
        paid[request_id].has_usage_row |= kind == "usage"
    text, params = sql.any_of(_BUDGET_PAID, request_ids)
    budget_rows = sql.execute(conn, text, params)
    for request_id, kind, amount in budget_rows:
        paid[request_id].charged -= int(amount)
        paid[request_id].has_inference_row |= kind == "inference"
    return LateState(settled, paid)


def charge(batch: Batch, command: Settlement) -> bool:
    """Apply a settlement (or a journaled checkpoint's, ``Batch.recover``) whose hold is no longer active; False
    when there is nothing to do (settled already, the hold unknown, released by its own call, or settled earlier in
    this batch)."""
    hold = batch.holds.get(command.hold_id)
    state = batch.late
    if hold is None or state is None or hold.new_status is not None or hold.id in state.settled:
        return False
    if hold.status not in ("expired", "captured"):
        return False
    record, paid = command.record, state.paid[hold.request_id]
    wallet = batch.wallets[hold.platform_id]
    taken = min(record.cost_nanos, paid.taken + max(0, wallet.balance - wallet.held))
    delta = taken - paid.taken  # negative: the checkpoint took more than the call cost, given back
    if delta != 0:
        wallet.balance -= delta
        wallet.dirty = True
        kind = WALLET_CORRECTION if paid.has_usage_row else "usage"
        row = batch._wallet_row(wallet, record, delta)
        row["type"] = kind
        batch.wallet_rows.append(row)
        if delta > 0:
            wallet.armed, fires = armed_after_spend(wallet.threshold, wallet.balance, wallet.armed)
            if fires:
                batch._wallet_event(wallet, hold.platform_id, row)
    charged = record.charged_nanos
    if hold.budget_id is not None:
        budget = batch.budgets[hold.budget_id]
        charged = min(command.charge_nanos, paid.charged + max(0, budget.available))
        # A period reset since the sweep may have zeroed ``used``: a refund never takes it below zero.
        change = max(charged - paid.charged, -budget.used)
        charged = paid.charged + change
        if change != 0 or not paid.has_inference_row:
            budget.used += change
            budget.dirty = True
            budget.armed, fires = armed_after_spend(budget.threshold, budget.max - budget.used, budget.armed)
            kind = BUDGET_CORRECTION if paid.has_inference_row else "inference"
            row = batch._budget_row(budget, record.request_id, -change, kind)
            batch.budget_rows.append(row)
            if kind == "inference":
                batch._budget_events(budget, row, fires)
    hold.new_status = "captured"  # also marks the hold handled in this batch: a duplicate is then a no-op
    batch.replaced.append({"request_id": hold.request_id, "id": hold.id})
    batch.log_rows.append(batch.log_row(record, taken, charged, row_id=hold.id))
    return True
