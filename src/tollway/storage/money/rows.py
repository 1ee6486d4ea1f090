"""The money rows a batch works on, as read (or cached) and changed in memory, and the embedded row cache that lets
a batch on SQLite skip its SELECTs while no other connection has committed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from tollway.domain.budgets import BudgetAmounts, armed_after_credit, plan_reset
from tollway.domain.clock import as_utc
from tollway.domain.platform_settings import BudgetPeriod

if TYPE_CHECKING:
    from tollway.storage.money.batch import Batch


@dataclass(slots=True)
class WalletRow:
    id: str
    balance: int
    held: int
    armed: bool
    threshold: int | None
    dirty: bool = False


@dataclass(slots=True)
class BudgetRow:
    id: str
    platform_id: str
    end_user_id: str
    max: int
    used: int
    held: int
    is_suspended: bool
    is_active: bool
    threshold: int | None
    armed: bool
    period: BudgetPeriod
    period_start: datetime
    replenish: int | None  # set only with auto-replenish on
    dirty: bool = False

    @property
    def available(self) -> int:
        return self.max - self.used - self.held

    def reset_if_due(self, now: datetime) -> int | None:
        """Apply a due period reset in memory (SPEC §9.8); returns the ``reset`` row's amount, or None."""
        reset = plan_reset(
            self.period, self.period_start, now, BudgetAmounts(self.max, self.used, self.held), self.replenish
        )
        if reset is None:
            return None
        self.max, self.used, self.period_start = reset.max_nanos, 0, reset.period_start
        self.armed = armed_after_credit(self.threshold, self.max, self.armed)
        self.dirty = True
        return reset.amount_nanos


@dataclass(slots=True)
class HoldRow:
    id: str
    request_id: str
    platform_id: str
    end_user_id: str | None
    budget_id: str | None
    wallet_nanos: int
    budget_nanos: int
    status: str
    terms: dict[str, Any]
    saved_checkpoint: dict[str, Any] | None
    new_status: str | None = None
    checkpoint: dict[str, Any] | None = None


@dataclass(slots=True)
class RowCache:
    """Embedded SQLite only: the money rows as this writer's connection last committed them. They stay valid while
    no other connection commits (``PRAGMA data_version`` unchanged: management calls, period resets and the
    migration all write through other connections), so a batch skips its SELECTs. A failed batch clears it."""

    version: int | None = None
    wallets: dict[str, WalletRow] = field(default_factory=dict)  # by platform id
    budgets: dict[str, BudgetRow] = field(default_factory=dict)  # by id
    budget_of_user: dict[str, BudgetRow | None] = field(default_factory=dict)  # None: no active budget
    holds: dict[str, HoldRow] = field(default_factory=dict)  # active holds
    subscriptions: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # platform -> event -> endpoints
    pending: Batch | None = None  # applied, awaiting the caller's COMMIT

    def clear(self) -> None:
        self.version = None
        self.pending = None
        for table in (self.wallets, self.budgets, self.budget_of_user, self.holds, self.subscriptions):
            table.clear()

    def committed(self) -> None:
        """The pending batch committed: its rows are the database's rows now."""
        batch, self.pending = self.pending, None
        if batch is None:
            return
        for platform_id, wallet in batch.wallets.items():
            wallet.dirty = False
            self.wallets[platform_id] = wallet
        for budget in batch.budgets.values():
            budget.dirty = False
            self.budgets[budget.id] = budget
        self.budget_of_user.update(batch.budget_of_user)
        for hold in batch.holds.values():
            if hold.new_status is None and hold.status == "active":
                hold.checkpoint = None
                self.holds[hold.id] = hold
            else:
                self.holds.pop(hold.id, None)
        for hold in batch.placed:
            self.holds[hold.id] = hold
        if batch.outbox is not None:
            self.subscriptions.update(batch.outbox.subs_of(batch.outbox_platforms))


def as_datetime(value: Any) -> datetime:
    """PostgreSQL gives aware datetimes; the raw SQLite connection gives the text SQLAlchemy stored (naive UTC)."""
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value)))


def from_json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value
