"""The PostgreSQL money writer's rows between batches (issue 18): what its snapshots read and what its own batches
made of them, so that a batch whose rows are all here is decided without a read and written in one round trip.

The rows may be stale: other instances and management calls commit meanwhile. Nothing here is trusted: a batch
decided from these rows must not be exact (``postgres.py``: then it reads afresh), the guards of
``tollway_money_apply`` cover the wallets, budgets and holds it changes, and its ``verify`` part covers the rest
(the platforms' settings, end users without a budget, webhook subscriptions). A conflict clears everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollway.storage.money.batch import Batch

# Holds settled elsewhere (the sweeper of another instance) are never seen again here: bound what they can cost.
MAX_ROWS = 20_000


class SnapshotCache:
    """Rows in the snapshot's own shapes (``postgres.SNAPSHOT``), so a cached snapshot reads like a fresh one."""

    def __init__(self) -> None:
        self.holds: dict[str, list[Any]] = {}  # active holds, by id
        self.wallets: dict[str, list[Any]] = {}  # by platform id
        self.budgets: dict[str, list[Any]] = {}  # by id
        self.budget_of_user: dict[str, str | None] = {}  # end user -> active budget id, None: none
        self.subscriptions: dict[str, list[list[Any]]] = {}  # by platform id
        self.digests: dict[str, str] = {}  # by platform id
        self.external_ids: dict[str, str] = {}

    def clear(self) -> None:
        for table in (
            self.holds, self.wallets, self.budgets, self.budget_of_user, self.subscriptions, self.digests,
            self.external_ids,
        ):  # fmt: skip
            table.clear()

    def snapshot(self, holds: list[str], platforms: list[str], users: list[str]) -> dict[str, Any] | None:
        """The batch's snapshot from the cached rows, or None when one is missing."""
        if any(h not in self.holds for h in holds) or any(u not in self.budget_of_user for u in users):
            return None
        hold_rows = [self.holds[h] for h in holds]
        plats = set(platforms) | {r[2] for r in hold_rows}
        budget_ids = {b for b in (self.budget_of_user[u] for u in users) if b is not None}
        budget_ids |= {r[4] for r in hold_rows if r[4] is not None}
        if any(p not in self.wallets for p in plats) or any(b not in self.budgets for b in budget_ids):
            return None
        everyone = set(users) | {r[3] for r in hold_rows if r[3] is not None}
        return {
            "holds": hold_rows,
            "wallets": [self.wallets[p] for p in plats],
            "budgets": [self.budgets[b] for b in budget_ids],
            "subscriptions": [row for p in plats for row in self.subscriptions.get(p, [])],
            "external_ids": {u: self.external_ids[u] for u in everyone if u in self.external_ids},
            "digests": {p: self.digests[p] for p in plats},
        }

    def absorb(self, snapshot: dict[str, Any], users: list[str]) -> None:
        """Keep the rows of a fresh snapshot."""
        if len(self.holds) > MAX_ROWS or len(self.budget_of_user) > MAX_ROWS:
            self.clear()
        for r in snapshot["holds"]:
            if r[7] == "active":
                self.holds[r[0]] = r
        for w in snapshot["wallets"]:
            self.wallets[w[1]] = w
            self.subscriptions[w[1]] = []
        for user in users:
            self.budget_of_user[user] = None
        for b in snapshot["budgets"]:
            self.budgets[b[0]] = b
            if b[7]:
                self.budget_of_user[b[2]] = b[0]
        for e in snapshot["subscriptions"]:
            self.subscriptions.setdefault(e[1], []).append(e)
        self.digests.update(snapshot["digests"])
        self.external_ids.update(snapshot["external_ids"])

    def committed(self, batch: Batch, now: dict[str, list[Any]]) -> None:
        """A batch committed: its wallets and budgets as the transaction left them (``now``, by id), its new holds
        in, its resolved holds out."""
        for platform_id, wallet in batch.wallets.items():
            row = now.get(wallet.id)
            old = self.wallets.get(platform_id)
            if row is not None and old is not None:
                self.wallets[platform_id] = [old[0], old[1], row[0], row[1], row[2], old[5], row[3], old[7]]
        for budget in batch.budgets.values():
            row = now.get(budget.id)
            old = self.budgets.get(budget.id)
            if row is not None and old is not None:
                self.budgets[budget.id] = [*old[:3], row[0], row[1], row[2], *old[6:9], row[3], old[10], row[5],
                                           old[12], old[13], row[4]]  # fmt: skip
        for hold in batch.holds.values():
            if hold.new_status is not None:
                self.holds.pop(hold.id, None)
        for hold in batch.placed:
            self.holds[hold.id] = [
                hold.id, hold.request_id, hold.platform_id, hold.end_user_id, hold.budget_id, hold.wallet_nanos,
                hold.budget_nanos, "active", hold.terms, None,
            ]  # fmt: skip
