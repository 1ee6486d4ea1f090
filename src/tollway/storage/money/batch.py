"""One group-commit transaction over a batch of money commands (holds, settlements, releases, checkpoints, logs).

Synchronous on purpose: on SQLite the whole batch runs in the writer thread in one hop, on PostgreSQL through
``AsyncConnection.run_sync``; statements are static driver SQL (``driver_sql``) because compiling Core statements
cost more than running them. Lock order is fixed: the holds, then every budget of the batch by id, then every
wallet by id, last, as ``tollway_money_apply`` takes them (migration 0019: the wallet row, which every call of a
platform writes, is held for the shortest time; SPEC §8 names wallet before budget, and the decisions do not depend
on the order). Changes are computed in memory from the locked rows, then written with one UPDATE per touched row and
bulk INSERTs; the CHECK constraints of ``tables.py`` stay the last line of defence.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tollway.domain.budgets import armed_after_spend
from tollway.domain.holds import (
    Checkpoint,
    Expire,
    HoldGrant,
    HoldRequest,
    LogOnly,
    MoneyCommand,
    Recover,
    Refusal,
    Release,
    Settlement,
    quote_hold,
)
from tollway.domain.ids import new_id
from tollway.domain.platform_settings import BudgetPeriod, PlatformSettings
from tollway.domain.recovery import sweep_outcome
from tollway.domain.usage import UsageRecord
from tollway.domain.webhooks import EventType, budget_data, wallet_data
from tollway.storage.money import late, statements
from tollway.storage.money.driver_sql import DriverConnection, DriverSQL
from tollway.storage.money.rows import BudgetRow, HoldRow, RowCache, WalletRow, as_datetime, from_json
from tollway.storage.sql.outbox import DriverOutbox, PendingEvent

Result = HoldGrant | Refusal | bool | None


class Batch:
    """One group-commit transaction in the making: the rows it read (or took from the cache), the decisions of its
    commands applied to them in memory, and the rows to write."""

    def __init__(self, conn: DriverConnection, now: datetime, sql: DriverSQL, cache: RowCache | None = None) -> None:
        self.cache = cache
        self.conn = conn
        self.now = now
        self.sql = sql
        self.stamp = sql.ts(now)  # the encoded timestamp of every row this batch writes
        # PostgreSQL: the rows a batch changes are never deleted nor their keys changed, so the lock that every
        # UPDATE of them takes anyway (NO KEY UPDATE) serialises the writers, and inserts of rows that reference
        # them (their foreign keys take KEY SHARE) are not blocked. SQLite holds the write lock from BEGIN IMMEDIATE.
        self.lock = "" if sql.sqlite else " FOR NO KEY UPDATE"
        self.wallets: dict[str, WalletRow] = {}
        self.budgets: dict[str, BudgetRow] = {}
        self.budget_of_user: dict[str, BudgetRow] = {}
        self.holds: dict[str, HoldRow] = {}
        self.new_holds: list[dict[str, Any]] = []
        self.wallet_rows: list[dict[str, Any]] = []
        self.budget_rows: list[dict[str, Any]] = []
        self.log_rows: list[dict[str, Any]] = []
        self.outbox: DriverOutbox | None = None  # read only when the batch captures something (webhooks, §11.4)
        self.outbox_platforms: list[str] = []
        self.placed: list[HoldRow] = []  # the holds this batch places, for the cache
        self.external_ids: dict[str, str | None] = {}
        self.late: late.LateState | None = None  # what settlements of already resolved holds need (``late.py``)
        self.replaced: list[dict[str, str]] = []  # the sweeper's log rows late settlements replace

    def _select(self, sql: str, ids: list[str]) -> list[Any]:
        text, params = self.sql.any_of(sql, {"ids": ids})
        return self.sql.execute(self.conn, text + self.lock, params)

    def load(self, commands: list[MoneyCommand]) -> None:
        """Lock and read the rows the batch touches, in the fixed order holds -> budgets -> wallets, the order of
        ``tollway_money_apply`` (migration 0019: the wallet row, which every call of a platform writes, is locked
        last); reads come from the cache when it is valid; only what it lacks is selected."""
        cache = self.cache
        hold_ids = {c.hold_id for c in commands if isinstance(c, Settlement | Release | Checkpoint | Expire | Recover)}
        if cache is not None:
            self.holds.update({i: cache.holds[i] for i in hold_ids if i in cache.holds})
        missing = sorted(hold_ids - self.holds.keys())
        if missing:
            sql = (
                "SELECT id, request_id, platform_id, end_user_id, budget_id, wallet_nanos, budget_nanos, status,"
                " terms, checkpoint FROM holds WHERE id IN (:ids) ORDER BY id"
            )
            for r in self._select(sql, missing):
                terms, checkpoint = from_json(r[8]) or {}, from_json(r[9])
                self.holds[r[0]] = HoldRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], terms, checkpoint)
        self.late = late.load(self, commands)
        self._load_budgets(commands)
        platform_ids = {c.platform_id for c in commands if isinstance(c, HoldRequest)}
        platform_ids |= {h.platform_id for h in self.holds.values()}
        if cache is not None:
            self.wallets.update({p: cache.wallets[p] for p in platform_ids if p in cache.wallets})
        missing = sorted(platform_ids - self.wallets.keys())
        if missing:
            # The platform's settings ride along for the wallet low-balance threshold; only the wallet is locked.
            sql = (
                "SELECT wallets.id, wallets.platform_id, wallets.balance_nanos, wallets.held_nanos,"
                " wallets.low_balance_armed, platforms.settings FROM wallets JOIN platforms"
                " ON platforms.id = wallets.platform_id WHERE wallets.platform_id IN (:ids) ORDER BY wallets.id"
            )
            text, params = self.sql.any_of(sql, {"ids": missing})
            lock = self.lock + " OF wallets" if self.lock else ""
            for r in self.sql.execute(self.conn, text + lock, params):
                threshold = PlatformSettings.from_stored(from_json(r[5])).wallet_low_balance_threshold_nanos
                self.wallets[r[1]] = WalletRow(r[0], r[2], r[3], bool(r[4]), threshold)
        captured = {
            self.holds[c.hold_id].platform_id
            for c in commands
            if isinstance(c, Settlement | Expire | Recover) and c.hold_id in self.holds
        }
        if captured:
            self.outbox_platforms = sorted(captured)
            known = cache.subscriptions if cache is not None else {}
            self.outbox = DriverOutbox(self.conn, self.sql, self.outbox_platforms, known)

    def _load_budgets(self, commands: list[MoneyCommand]) -> None:
        cache = self.cache
        end_users = {c.end_user_id for c in commands if isinstance(c, HoldRequest) and c.end_user_id}
        budget_ids = {h.budget_id for h in self.holds.values() if h.budget_id}
        if cache is not None:
            for user in end_users & cache.budget_of_user.keys():
                known = cache.budget_of_user[user]
                if known is not None:
                    self.budget_of_user[user] = self.budgets[known.id] = known
            end_users = {u for u in end_users if u not in cache.budget_of_user}
            self.budgets.update({b: cache.budgets[b] for b in budget_ids if b in cache.budgets})
            budget_ids -= self.budgets.keys()
        if end_users or budget_ids:
            # Both sets, by id: the live budgets of the batch's end users and those its holds were placed on.
            sql, params = self.sql.any_of(
                "SELECT id, platform_id, end_user_id, max_nanos, used_nanos, held_nanos, is_suspended, is_active,"
                " low_balance_threshold_nanos, low_balance_armed, period, period_start, auto_replenish,"
                " replenish_nanos FROM budgets"
                " WHERE (end_user_id IN (:users) AND is_active = :active) OR id IN (:budgets) ORDER BY id",
                {"users": sorted(end_users) or [""], "budgets": sorted(budget_ids) or [""]},
            )
            rows = self.sql.execute(self.conn, sql + self.lock, {**params, "active": True})
            for r in rows:
                replenish = r[13] if r[12] else None
                budget = BudgetRow(
                    r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), bool(r[7]), r[8], bool(r[9]),
                    BudgetPeriod(r[10]), as_datetime(r[11]), replenish,
                )  # fmt: skip
                self.budgets[budget.id] = budget
                if budget.is_active:
                    self.budget_of_user[budget.end_user_id] = budget
            if cache is not None:  # remember the end users who have no active budget, too
                for user in end_users - self.budget_of_user.keys():
                    cache.budget_of_user[user] = None
        for budget in self.budgets.values():
            if budget.is_active:
                # Resets are applied before any operation that touches a budget past its boundary.
                amount = budget.reset_if_due(self.now)
                if amount is not None:
                    self.budget_rows.append(self._budget_row(budget, None, amount, "reset"))

    # -- commands ------------------------------------------------------------------------------------------------

    def place(self, command: HoldRequest) -> HoldGrant | Refusal:
        wallet = self.wallets.get(command.platform_id)
        if wallet is None:
            return Refusal.NO_WALLET
        budget = self.budget_of_user.get(command.end_user_id) if command.end_user_id else None
        if budget is not None and budget.is_suspended:
            return Refusal.SUSPENDED
        quote = quote_hold(
            command.terms,
            command.n,
            command.markup_bps,
            wallet.balance - wallet.held,
            budget.available if budget is not None else None,
        )
        if isinstance(quote, Refusal):
            return quote
        hold_id = new_id()
        wallet.held += quote.wallet_nanos
        wallet.dirty = True
        if budget is not None:
            budget.held += quote.budget_nanos
            budget.dirty = True
        self.new_holds.append(
            {
                "id": hold_id,
                "request_id": command.request_id,
                "platform_id": command.platform_id,
                "end_user_id": command.end_user_id,
                "wallet_id": wallet.id,
                "budget_id": budget.id if budget is not None else None,
                "wallet_nanos": quote.wallet_nanos,
                "budget_nanos": quote.budget_nanos,
                "terms": self.sql.json({**command.recovery, "markup_bps": command.markup_bps, "n": command.n}),
                "status": "active",
                "checkpoint": None,
                "expires_at": self.sql.ts(command.expires_at),
                "created_at": self.stamp,
                "resolved_at": None,
            }
        )
        budget_id = budget.id if budget is not None else None
        if self.cache is not None:
            terms = {**command.recovery, "markup_bps": command.markup_bps, "n": command.n}
            hold = HoldRow(
                hold_id, command.request_id, command.platform_id, command.end_user_id, budget_id,
                quote.wallet_nanos, quote.budget_nanos, "active", terms, None,
            )  # fmt: skip
            self.placed.append(hold)
        return HoldGrant(hold_id, quote.wallet_nanos, quote.budget_nanos, budget_id, quote.clamped_limit)

    def _resolve(self, hold_id: str, status: str) -> HoldRow | None:
        """Mark an active hold resolved and give back what it held; None when it already ended (§9.6 inv. 5)."""
        hold = self.holds.get(hold_id)
        if hold is None or hold.status != "active" or hold.new_status is not None:
            return None
        hold.new_status = status
        wallet = self.wallets[hold.platform_id]
        wallet.held -= hold.wallet_nanos
        wallet.dirty = True
        if hold.budget_id is not None:
            budget = self.budgets[hold.budget_id]
            budget.held -= hold.budget_nanos
            budget.dirty = True
        return hold

    def settle(self, command: Settlement) -> bool:
        """Capture the hold; its log row takes the hold's id, which makes a settlement apply at most once."""
        hold = self._resolve(command.hold_id, "captured")
        if hold is None:
            return late.charge(self, command)
        self._capture(hold, command.record, command.charge_nanos, hold.id)
        return True

    def expire(self, command: Expire) -> bool:
        """Settle an expired hold from its checkpoint, or release it with a ``hold_expired`` log row."""
        hold = self.holds.get(command.hold_id)
        if hold is None or hold.status != "active" or hold.new_status is not None:
            return False
        record, charge, capture = sweep_outcome(
            hold.request_id, hold.platform_id, hold.end_user_id, hold.terms, hold.saved_checkpoint
        )
        self._resolve(hold.id, "captured" if capture else "expired")
        if capture:
            self._capture(hold, record, charge)
        else:
            self.log_rows.append(self.log_row(record, 0, record.charged_nanos))
        return True

    def recover(self, command: Recover) -> bool:
        """A journaled stream checkpoint of a dead instance: the settlement the sweeper would make from it, applied
        like any settlement (at most once per hold, late when the sweeper resolved the hold first)."""
        hold = self.holds.get(command.hold_id)
        if hold is None:
            return False
        record, charge, capture = sweep_outcome(
            hold.request_id, hold.platform_id, hold.end_user_id, hold.terms, command.progress
        )
        return capture and self.settle(Settlement(hold.id, record, charge))

    def _capture(self, hold: HoldRow, record: UsageRecord, charge_nanos: int, row_id: str | None = None) -> None:
        wallet = self.wallets[hold.platform_id]
        take = max(0, min(record.cost_nanos, wallet.balance - wallet.held))
        if take > 0:
            wallet.balance -= take
            row = self._wallet_row(wallet, record, take)
            self.wallet_rows.append(row)
            wallet.armed, fires = armed_after_spend(wallet.threshold, wallet.balance, wallet.armed)
            if fires:
                self._wallet_event(wallet, hold.platform_id, row)
        charged = record.charged_nanos
        if hold.budget_id is not None:
            budget = self.budgets[hold.budget_id]
            charged = max(0, min(charge_nanos, budget.available))
            budget.used += charged
            budget.armed, fires = armed_after_spend(budget.threshold, budget.max - budget.used, budget.armed)
            row = self._budget_row(budget, record.request_id, -charged, "inference")
            self.budget_rows.append(row)
            self._budget_events(budget, row, fires)
        self.log_rows.append(self.log_row(record, take, charged, row_id))

    def _wallet_event(self, wallet: WalletRow, platform_id: str, row: dict[str, Any]) -> None:
        event = EventType.WALLET_LOW_BALANCE.value
        if self.outbox is None or not self.outbox.wants(platform_id, event):
            return
        data = wallet_data(
            platform_id=platform_id, wallet_id=wallet.id, transaction_id=row["id"], txn_type="usage",
            amount_nanos=row["amount_nanos"], balance_after_nanos=wallet.balance, threshold_nanos=wallet.threshold,
            request_id=row["request_id"],
        )  # fmt: skip
        self.outbox.add(PendingEvent(platform_id, event, row["id"], data))

    def _budget_events(self, budget: BudgetRow, row: dict[str, Any], low_balance: bool) -> None:
        """``budget.debited`` for every inference row, ``budget.low_balance`` on the crossing (§11.1, §9.8)."""
        outbox = self.outbox
        if outbox is None:
            return
        types = [EventType.BUDGET_DEBITED.value]
        if low_balance:
            types.append(EventType.BUDGET_LOW_BALANCE.value)
        for event in types:
            if not outbox.wants(budget.platform_id, event):
                continue
            self.external_ids.setdefault(budget.end_user_id, None)
            data = budget_data(
                platform_id=budget.platform_id, end_user_id=budget.end_user_id, external_id=None,
                budget_id=budget.id, transaction_id=row["id"], txn_type="inference",
                amount_nanos=row["amount_nanos"], max_after_nanos=row["max_after_nanos"],
                used_after_nanos=row["used_after_nanos"], threshold_nanos=budget.threshold, reason=None,
                metadata={}, request_id=row["request_id"],
            )  # fmt: skip
            outbox.add(PendingEvent(budget.platform_id, event, row["id"], data))

    def _flush_outbox(self) -> None:
        """Fills in the end users' ``external_id`` (one SELECT, only when an event needs it), then bulk-inserts."""
        outbox = self.outbox
        if outbox is None or not outbox.pending:
            return
        if self.external_ids:
            text, params = self.sql.any_of(statements.SELECT_EXTERNAL_IDS, {"ids": sorted(self.external_ids)})
            rows = self.sql.execute(self.conn, text, params)
            self.external_ids.update({r[0]: r[1] for r in rows})
            for event in outbox.pending:
                if "external_id" in event.data:
                    assert isinstance(event.data, dict)
                    event.data["external_id"] = self.external_ids.get(event.data["end_user_id"])
        outbox.flush(self.now)

    def release(self, command: Release) -> bool:
        return self._resolve(command.hold_id, "released") is not None

    def checkpoint(self, command: Checkpoint) -> bool:
        hold = self.holds.get(command.hold_id)
        if hold is None or hold.status != "active":
            return False
        hold.checkpoint = command.progress
        hold.saved_checkpoint = command.progress
        return True

    def _wallet_row(self, wallet: WalletRow, record: UsageRecord, take: int) -> dict[str, Any]:
        return {
            "id": new_id(),
            "wallet_id": wallet.id,
            "platform_id": record.platform_id,
            "type": "usage",
            "amount_nanos": -take,
            "balance_after_nanos": wallet.balance,
            "description": record.ledger_description,
            "metadata": "{}",
            "request_id": record.request_id,
            "created_at": self.stamp,
        }

    def _budget_row(self, budget: BudgetRow, request_id: str | None, amount: int, kind: str) -> dict[str, Any]:
        return {
            "id": new_id(),
            "budget_id": budget.id,
            "platform_id": budget.platform_id,
            "end_user_id": budget.end_user_id,
            "type": kind,
            "amount_nanos": amount,
            "max_after_nanos": budget.max,
            "used_after_nanos": budget.used,
            "remaining_after_nanos": budget.max - budget.used,
            "reason": None,
            "metadata": "{}",
            "request_id": request_id,
            "created_at": self.stamp,
        }

    # -- writes --------------------------------------------------------------------------------------------------

    def log_row(self, record: UsageRecord, take: int, charged: int | None, row_id: str | None = None) -> dict[str, Any]:
        return {
            "id": row_id or new_id(),
            "platform_id": record.platform_id,
            "end_user_id": record.end_user_id,
            "request_type": record.request_type,
            "provider_id": record.provider_id,
            "model": record.model,
            "provider_model": record.provider_model,
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "total_tokens": record.total_tokens,
            "cached_tokens": record.cached_tokens,
            "latency_ms": record.latency_ms,
            "ttft_ms": record.ttft_ms,
            "cost_nanos": record.cost_nanos,
            "charged_nanos": charged,
            "uncollected_nanos": record.cost_nanos - take,
            "status": str(record.status),
            "finish_reason": record.finish_reason,
            "error_code": record.error_code,
            "token_count_method": record.token_count_method,
            "request_id": record.request_id,
            "session_id": record.session_id,
            "metadata": self.sql.json(record.metadata),
            "response_id": record.response_id,
            "iteration": record.iteration,
            "thread_id": record.thread_id,
            "mcp_app": record.mcp_app,
            "mcp_tool": record.mcp_tool,
            "mcp_free": record.mcp_free,
            "created_at": self.stamp,
        }

    def flush(self) -> None:
        sql, conn, now = self.sql, self.conn, self.stamp
        wallets = [
            {"balance": w.balance, "held": w.held, "armed": w.armed, "now": now, "id": w.id}
            for w in self.wallets.values()
            if w.dirty
        ]
        budgets = [
            {
                "max": b.max,
                "used": b.used,
                "held": b.held,
                "armed": b.armed,
                "period_start": sql.ts(b.period_start),
                "now": now,
                "id": b.id,
            }
            for b in self.budgets.values()
            if b.dirty
        ]
        if wallets:
            sql.executemany(conn, statements.UPDATE_WALLET, wallets)
        if budgets:  # one budget row per end user of the batch: up to one per call with many end users
            sql.executemany(conn, statements.UPDATE_BUDGET, budgets)
        checkpoints = [
            {"checkpoint": sql.json(h.checkpoint), "id": h.id} for h in self.holds.values() if h.checkpoint is not None
        ]
        resolved = [
            {"status": h.new_status, "now": now, "id": h.id} for h in self.holds.values() if h.new_status is not None
        ]
        if checkpoints:
            sql.executemany(conn, statements.CHECKPOINT_HOLD, checkpoints)
        if resolved:
            sql.executemany(conn, statements.RESOLVE_HOLD, resolved)
        if self.replaced:
            sql.executemany(conn, late.DELETE_SWEPT_LOGS, self.replaced)
        for statement, rows in (
            (statements.INSERT_HOLD, self.new_holds),
            (statements.INSERT_WALLET_TX, self.wallet_rows),
            (statements.INSERT_BUDGET_TX, self.budget_rows),
            (statements.INSERT_LOG, self.log_rows),
        ):
            if rows:
                sql.executemany(conn, statement, rows)
        self._flush_outbox()


def prepare_batch(
    conn: DriverConnection,
    commands: list[MoneyCommand],
    now: datetime,
    sql: DriverSQL,
    cache: RowCache | None = None,
    batch_class: type[Batch] = Batch,
) -> tuple[Batch, list[Result]]:
    """Lock and read the batch's rows and decide every command in memory (results line up with the commands);
    nothing is written until ``Batch.flush``. With ``cache`` (embedded SQLite, validated by the caller; on
    PostgreSQL a snapshot, ``postgres.py``) the rows it holds are not read again, and it absorbs the batch once the
    caller has committed (``RowCache.committed``). ``batch_class``: PostgreSQL decides with a traced ``Batch``."""
    batch = batch_class(conn, now, sql, cache)
    batch.load(commands)
    results: list[Result] = [None] * len(commands)
    # The sweeper's commands go last: a settlement in the same batch captures its hold in full first.
    sweeps = [i for i, command in enumerate(commands) if isinstance(command, Expire)]
    order = [i for i in range(len(commands)) if i not in sweeps] + sweeps if sweeps else range(len(commands))
    for i in order:
        results[i] = _decide(batch, commands[i])
    if cache is not None:
        cache.pending = batch
    return batch, results


def _decide(batch: Batch, command: MoneyCommand) -> Result:
    if isinstance(command, HoldRequest):
        return batch.place(command)
    if isinstance(command, Settlement):
        return batch.settle(command)
    if isinstance(command, Release):
        return batch.release(command)
    if isinstance(command, Checkpoint):
        return batch.checkpoint(command)
    if isinstance(command, Expire):
        return batch.expire(command)
    if isinstance(command, Recover):
        return batch.recover(command)
    assert isinstance(command, LogOnly)
    batch.log_rows.append(batch.log_row(command.record, 0, command.record.charged_nanos))
    return None


def apply_batch(
    conn: DriverConnection,
    commands: list[MoneyCommand],
    now: datetime,
    sql: DriverSQL,
    cache: RowCache | None = None,
) -> list[Result]:
    """The whole batch in the caller's transaction: decided, then written."""
    batch, results = prepare_batch(conn, commands, now, sql, cache)
    batch.flush()
    return results
