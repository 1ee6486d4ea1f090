"""What reconciliation (SPEC §9.6) reports, and the store-wide money totals ``/metrics`` shows (SPEC §13.4).

Kinds of difference, each ``(kind, id, expected_nanos, actual_nanos)``:
- ``wallet_balance`` / ``budget_remaining``: the sum of the ledger rows vs the stored balance (invariant 1);
- ``wallet_held`` / ``budget_held``: the sum of active holds vs the stored ``held`` (invariant 2);
- ``wallet_available`` / ``budget_available``: ``balance − held`` is negative (expected 0, invariant 2);
- ``usage_wallet_row``: per request id, the settled log row's ``cost − uncollected`` vs the negated wallet
  ``usage`` rows (invariant 6; a wallet row without a settled log row counts against an expected 0);
- ``usage_budget_row``: the settled log row's ``charged`` vs the negated budget ``inference`` rows (invariant 6).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tollway.domain.clock import rfc3339
from tollway.domain.money import nanos_to_json_number


@dataclass(frozen=True, slots=True)
class Difference:
    kind: str
    id: str
    expected_nanos: int
    actual_nanos: int


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    checked_at: datetime
    wallets: int
    budgets: int
    differences: list[Difference]

    @property
    def ok(self) -> bool:
        return not self.differences

    def body(self) -> dict[str, Any]:
        """The JSON answer of ``GET /v1/admin/reconcile`` and ``tollway reconcile`` (USD amounts per §9.1)."""
        return {
            "ok": self.ok,
            "checked_at": rfc3339(self.checked_at),
            "wallets": self.wallets,
            "budgets": self.budgets,
            "differences": [
                {
                    "kind": d.kind,
                    "id": d.id,
                    "expected_usd": nanos_to_json_number(d.expected_nanos),
                    "actual_usd": nanos_to_json_number(d.actual_nanos),
                }
                for d in self.differences
            ],
        }


@dataclass(frozen=True, slots=True)
class StoreTotals:
    """The two store-wide gauges read at scrape time: active holds and the total uncollected n$."""

    holds_active: int
    uncollected_nanos: int
