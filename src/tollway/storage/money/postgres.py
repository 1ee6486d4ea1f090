"""The money writer's PostgreSQL path (issue 18): most batches in one round trip, no row lock held across a round
trip or while Python runs, the wallet row locked last and only for the end of one statement.

1. The writer keeps the rows of its last reads and of its own commits (``pg_cache.py``). A batch whose rows are all
   kept (on a connection used within ``IDLE_S``) is decided from them; otherwise one prepared statement
   (``SNAPSHOT``) reads them first, without locks.
2. The batch is decided in memory by the same code as everywhere (``batch.Batch``), traced: how much room each
   wallet and budget had left at every decision, and whether a decision depended on an exact amount (a refusal, a
   clamped limit, a settlement over what was available, a low-balance event, a period reset, any webhook event).
   An exact batch is never decided from kept rows: it reads them afresh.
3. ``tollway_money_apply`` (migrations 0016, 0017, 0019, 0020) writes it in its own transaction. From kept rows it first
   checks what they assumed (``verify``: the platforms' settings, no budget since created for an end user without
   one, the same webhook subscriptions). The holds it resolves are locked and must still be active; the budgets,
   then the wallets, are locked at the very end (each table's rows in id order; the wallet row, which every call of
   the platform writes, last of all) and updated by one UPDATE per table, which applies the batch only if every
   row's guard holds. Exact
   batches need the row the batch read (its ``xmin``). Otherwise the row needs at least ``need`` available (every
   decision of the batch had room, so the same decisions hold for the current amounts, and the ledger rows' "after"
   amounts move by what other instances committed meanwhile) and nothing a low-balance rule reads may have
   changed. A failed check raises SQLSTATE TW409 and writes nothing; the function returns the rows as it left them.
4. On TW409 a batch decided from kept rows is read afresh and written again. A batch read afresh that conflicts, or
   that needs more than a snapshot holds (a late charge, the sweeper's commands, a platform without a wallet), runs
   the way it always did: one transaction that locks its rows first (``batch.apply_batch``), so behaviour never
   depends on which path ran.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, cast

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.domain.holds import (
    Checkpoint,
    Expire,
    HoldGrant,
    HoldRequest,
    MoneyCommand,
    Recover,
    Refusal,
    Release,
    Settlement,
)
from tollway.domain.platform_settings import BudgetPeriod, PlatformSettings
from tollway.domain.usage import UsageRecord
from tollway.storage.money.batch import Batch, Result, apply_batch, prepare_batch
from tollway.storage.money.driver_sql import DriverConnection, DriverSQL
from tollway.storage.money.pg_cache import SnapshotCache
from tollway.storage.money.rows import BudgetRow, HoldRow, RowCache, WalletRow, as_datetime
from tollway.storage.sql.outage import unreachable
from tollway.storage.sql.outbox import index_subscriptions, outbox_rows

log = logging.getLogger("tollway.money")

CONFLICT = "TW409"
# Every row a batch decides on, read without locks in one prepared statement: the holds it names, the wallets (with
# their platform's settings) and webhook subscriptions of their platforms, the budgets of its end users and holds, and
# the end users' external ids (for event data). Every table is read through an index condition on the ids (``= ANY``
# of an array, not ``IN (SELECT …)``, which a plan may answer with a hash join over a whole table), so the plan
# ``SESSION`` fixes for it needs no sequential scan.
SNAPSHOT = """
WITH h AS (
    SELECT id, request_id, platform_id, end_user_id, budget_id, wallet_nanos, budget_nanos, status, terms, checkpoint
    FROM holds WHERE id = ANY($1::text[])
), plats AS (
    SELECT unnest($2::text[]) AS id UNION SELECT platform_id FROM h
), users AS (
    SELECT unnest($3::text[]) AS id UNION SELECT end_user_id FROM h WHERE end_user_id IS NOT NULL
)
SELECT jsonb_build_object(
    'holds', (SELECT coalesce(jsonb_agg(jsonb_build_array(id, request_id, platform_id, end_user_id, budget_id,
        wallet_nanos, budget_nanos, status, terms::jsonb, checkpoint::jsonb)), '[]'::jsonb) FROM h),
    'wallets', (SELECT coalesce(jsonb_agg(jsonb_build_array(w.id, w.platform_id, w.balance_nanos, w.held_nanos,
        w.low_balance_armed, p.settings::jsonb, w.xmin::text, p.xmin::text)), '[]'::jsonb)
        FROM wallets w JOIN platforms p ON p.id = w.platform_id WHERE w.platform_id = ANY(ARRAY(SELECT id FROM plats))),
    'budgets', (SELECT coalesce(jsonb_agg(jsonb_build_array(b.id, b.platform_id, b.end_user_id, b.max_nanos,
        b.used_nanos, b.held_nanos, b.is_suspended, b.is_active, b.low_balance_threshold_nanos, b.low_balance_armed,
        b.period, b.period_start, b.auto_replenish, b.replenish_nanos, b.xmin::text)), '[]'::jsonb)
        FROM budgets b WHERE (b.end_user_id = ANY($3::text[]) AND b.is_active)
        OR b.id = ANY(ARRAY(SELECT budget_id FROM h WHERE budget_id IS NOT NULL))),
    'subscriptions', (SELECT coalesce(jsonb_agg(jsonb_build_array(e.id, e.platform_id, e.events::jsonb)),
        '[]'::jsonb) FROM webhook_endpoints e
        WHERE e.platform_id = ANY(ARRAY(SELECT id FROM plats)) AND e.is_active AND e.deleted_at IS NULL),
    'external_ids', (SELECT coalesce(jsonb_object_agg(u.id, u.external_id), '{}'::jsonb)
        FROM end_users u WHERE u.id = ANY(ARRAY(SELECT id FROM users))),
    'digests', (SELECT coalesce(jsonb_object_agg(pl.id, (SELECT md5(coalesce(string_agg(e.id || '=' || e.events::text,
        ',' ORDER BY e.id), '')) FROM webhook_endpoints e
        WHERE e.platform_id = pl.id AND e.is_active AND e.deleted_at IS NULL)), '{}'::jsonb) FROM plats pl)
)::text
"""
APPLY = "SELECT tollway_money_apply($1::text::jsonb)::text"
# The writer's session settings, as ``tollway_money_apply``'s own (migration 0017, which says why). A prepared
# statement is planned with its values for five executions, then keeps one generic plan for the session if that
# looks no dearer: a writer that started while the tables were small kept ``SNAPSHOT``'s sequential scan of the holds
# until the next ANALYZE of the table (measured: 0.6 ms a snapshot of 32 holds, then 250 ms once 200,000 holds were
# added). Without sequential scans its one generic plan reads every table by index whatever their sizes, and is
# made once per session. No JIT: a plan that did fall back to a disabled sequential scan would cost more than
# ``jit_above_cost`` and be compiled at every execution (half a second), and nothing here reads enough rows to gain.
SESSION = {"enable_seqscan": "off", "plan_cache_mode": "force_generic_plan", "jit": "off"}
# A connection unused this long is not trusted with a write first (a restarted server drops it): the batch reads its
# snapshot first, which is retried once on a fresh connection.
IDLE_S = 1.0
Keys = tuple[list[str], list[str], list[str]]


class PostgresMoney:
    """The writer's own asyncpg connection (statements prepared once), and the locked path as the fallback."""

    def __init__(self, database_url: str, engine: AsyncEngine) -> None:
        self._dsn = "postgresql://" + database_url.split("://", 1)[1]
        self._engine = engine
        self._conn: asyncpg.Connection | None = None
        self._used = 0.0  # when the connection last committed a batch (time.monotonic)
        self.cache = SnapshotCache()
        self.cached = 0  # batches committed in one round trip (decided from the cache)
        self.batches = 0  # batches committed in two round trips (snapshot, write)
        self.locked = 0  # batches committed through the locked path
        self.conflicts = 0  # writes refused by a guard or a check (then read again, or locked)
        self.idle_s = IDLE_S

    async def apply(self, commands: list[MoneyCommand], now: datetime, sql: DriverSQL) -> list[Result]:
        if any(isinstance(c, Expire | Recover) for c in commands):
            return await self._locked(commands, now, sql)
        keys = _keys(commands)
        idle = self._conn is None or time.monotonic() - self._used > self.idle_s
        cached = None if idle else self.cache.snapshot(*keys)
        if cached is not None:
            planned = plan(commands, now, sql, cached, keys[2])
            if planned is not None and not planned.exact:
                done = await self._write(planned)
                if done:
                    self.cached += 1
                    return planned.results
        return await self._read_and_write(commands, now, sql, keys)

    async def _read_and_write(
        self, commands: list[MoneyCommand], now: datetime, sql: DriverSQL, keys: Keys
    ) -> list[Result]:
        """Two round trips: the snapshot, then the write; the locked path when the snapshot is not enough or the
        write conflicts."""
        reused = self._conn is not None
        conn = await self._connection()
        try:
            try:
                raw = await conn.fetchval(SNAPSHOT, *keys)
            except Exception as exc:
                if not (reused and _lost(exc)):
                    raise
                # A connection the server dropped (a restart): nothing was written, so try a fresh one once.
                await self._drop()
                conn = await self._connection()
                raw = await conn.fetchval(SNAPSHOT, *keys)
        except BaseException:
            await self._drop()
            raise
        snapshot = orjson.loads(raw)
        self.cache.absorb(snapshot, keys[2])
        planned = plan(commands, now, sql, snapshot, keys[2])
        if planned is not None:
            del planned.payload["verify"]  # read just now: the guards cover what may change from here on
            if await self._write(planned):
                self.batches += 1
                return planned.results
        return await self._locked(commands, now, sql)

    async def _write(self, planned: Planned) -> bool:
        """One call of ``tollway_money_apply``; False on a conflict (nothing written, the cache cleared)."""
        conn = await self._connection()
        try:
            raw = await conn.fetchval(APPLY, orjson.dumps(planned.payload).decode())
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == CONFLICT:
                log.debug("money batch conflict (%s)", exc)
                self.conflicts += 1
                self.cache.clear()
                return False
            if _lost(exc):
                await self._drop()
            raise
        except BaseException:
            # A connection that failed (or was cancelled) mid-statement is not trusted again.
            await self._drop()
            raise
        self._used = time.monotonic()
        self.cache.committed(planned.batch, orjson.loads(raw))
        return True

    async def _locked(self, commands: list[MoneyCommand], now: datetime, sql: DriverSQL) -> list[Result]:
        self.locked += 1
        self.cache.clear()  # the locked path changes rows behind the cache
        async with self._engine.begin() as conn:
            return await conn.run_sync(apply_batch, commands, now, sql)

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self._dsn, server_settings=SESSION)
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)


def _lost(exc: BaseException) -> bool:
    """The connection is gone (as opposed to a statement refused): it is not used again."""
    return isinstance(exc, asyncpg.InterfaceError) or unreachable(exc)


def _keys(commands: Iterable[MoneyCommand]) -> Keys:
    holds: set[str] = set()
    platforms: set[str] = set()
    users: set[str] = set()
    for c in commands:
        if isinstance(c, HoldRequest):
            platforms.add(c.platform_id)
            if c.end_user_id:
                users.add(c.end_user_id)
        elif isinstance(c, Settlement | Release | Checkpoint):
            holds.add(c.hold_id)
    return sorted(holds), sorted(platforms), sorted(users)


class _Unread(Exception):
    """The batch needs a row the snapshot does not hold: it takes the locked path."""


class _NoConnection:
    """Stands in for the connection while a batch is decided from its snapshot: any read it still wants fails."""

    def exec_driver_sql(self, *_args: Any) -> NoReturn:
        raise _Unread


class _Base:
    """The snapshot's values of the rows the batch may change, for the guards."""

    def __init__(self, snapshot: dict[str, Any], users: list[str]) -> None:
        self.wallets: dict[str, tuple[int, int, bool, str]] = {}  # id -> balance, held, armed, xmin
        self.platform_xmin: dict[str, str] = {}  # platform id -> its row's xmin (its settings)
        self.budgets: dict[str, tuple[list[Any], int]] = {}  # id -> snapshot row, available
        self.cache = RowCache()
        for r in snapshot["holds"]:
            self.cache.holds[r[0]] = HoldRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8] or {}, r[9])
        for w in snapshot["wallets"]:
            threshold = PlatformSettings.from_stored(w[5]).wallet_low_balance_threshold_nanos
            self.cache.wallets[w[1]] = WalletRow(w[0], w[2], w[3], bool(w[4]), threshold)
            self.wallets[w[0]] = (w[2], w[3], bool(w[4]), w[6])
            self.platform_xmin[w[1]] = w[7]
        for user in users:
            self.cache.budget_of_user[user] = None  # replaced below when the end user has an active budget
        for b in snapshot["budgets"]:
            replenish = b[13] if b[12] else None
            budget = BudgetRow(
                b[0], b[1], b[2], b[3], b[4], b[5], bool(b[6]), bool(b[7]), b[8], bool(b[9]),
                BudgetPeriod(b[10]), as_datetime(b[11]), replenish,
            )  # fmt: skip
            self.cache.budgets[budget.id] = budget
            if budget.is_active:
                self.cache.budget_of_user[budget.end_user_id] = budget
            self.budgets[budget.id] = (b, budget.available)
        subs = index_subscriptions(snapshot["subscriptions"])
        self.cache.subscriptions = {p: subs.get(p, {}) for p in self.cache.wallets}
        self.external_ids: dict[str, str] = snapshot["external_ids"]
        self.digests: dict[str, str] = snapshot["digests"]


class _Traced(Batch):
    """A batch that also records, per wallet and budget, the least room any of its decisions left, and whether a
    decision depended on an exact amount (then the batch needs the very rows it read)."""

    def __init__(self, conn: DriverConnection, now: datetime, sql: DriverSQL, cache: RowCache | None) -> None:
        super().__init__(conn, now, sql, cache)
        self.exact = False
        self.room: dict[str, int] = {}  # wallet or budget id -> least room left by a decision
        self.spent: set[str] = set()  # wallets charged (take > 0) and budgets with an inference row

    def _left(self, account: str, room: int) -> None:
        self.room[account] = min(room, self.room.get(account, room))

    def place(self, command: HoldRequest) -> HoldGrant | Refusal:
        wallet = self.wallets.get(command.platform_id)
        budget = self.budget_of_user.get(command.end_user_id) if command.end_user_id else None
        wallet_room = wallet.balance - wallet.held if wallet is not None else 0
        budget_room = budget.available if budget is not None else 0
        result = super().place(command)
        if not isinstance(result, HoldGrant) or result.clamped_limit is not None:
            self.exact = True
            return result
        assert wallet is not None
        if result.wallet_nanos:
            self._left(wallet.id, wallet_room - result.wallet_nanos)
        if budget is not None and result.budget_nanos:
            self._left(budget.id, budget_room - result.budget_nanos)
        return result

    def _capture(self, hold: HoldRow, record: UsageRecord, charge_nanos: int, row_id: str | None = None) -> None:
        wallet = self.wallets[hold.platform_id]
        room, armed = wallet.balance - wallet.held, wallet.armed
        if record.cost_nanos > room:
            self.exact = True  # taken as far as it goes: the amount depends on the exact balance
        elif record.cost_nanos > 0:
            self._left(wallet.id, room - record.cost_nanos)
            self.spent.add(wallet.id)
        budget = self.budgets[hold.budget_id] if hold.budget_id is not None else None
        budget_armed = budget.armed if budget is not None else False
        if budget is not None:
            if charge_nanos > budget.available:
                self.exact = True
            elif charge_nanos > 0:
                self._left(budget.id, budget.available - charge_nanos)
            self.spent.add(budget.id)
        super()._capture(hold, record, charge_nanos, row_id)
        if wallet.armed != armed or (budget is not None and budget.armed != budget_armed):
            self.exact = True  # a low-balance event fired


@dataclass(slots=True)
class Planned:
    """A batch decided from a snapshot: what ``tollway_money_apply`` takes, the results, and whether a decision
    depended on an exact amount."""

    payload: dict[str, Any]
    results: list[Result]
    exact: bool
    batch: Batch


def plan(
    commands: list[MoneyCommand], now: datetime, sql: DriverSQL, snapshot: dict[str, Any], users: list[str]
) -> Planned | None:
    """Decide the batch from its snapshot, or None when it needs a row the snapshot does not hold."""
    base = _Base(snapshot, users)
    conn = cast(DriverConnection, _NoConnection())
    try:
        batch, results = prepare_batch(conn, commands, now, sql, base.cache, _Traced)
    except _Unread:
        return None
    assert isinstance(batch, _Traced)
    outbox = batch.outbox
    events: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    if outbox is not None and outbox.pending:
        batch.exact = True  # an event's data carries the exact amounts after the change
        for event in outbox.pending:
            if "external_id" in event.data:
                assert isinstance(event.data, dict)
                event.data["external_id"] = base.external_ids.get(event.data["end_user_id"])
        events, deliveries = outbox_rows(outbox.subs, outbox.pending, now)
        for row in events:
            row["body"] = row["body"].hex()
    if any(row["type"] == "reset" for row in batch.budget_rows):
        batch.exact = True
    writes = [h for h in batch.holds.values() if h.new_status is not None or h.checkpoint is not None]
    payload = {
        "now": now,
        "locked": sorted(h.id for h in writes),
        "resolved": [{"id": h.id, "status": h.new_status} for h in writes if h.new_status is not None],
        "checkpoints": [{"id": h.id, "checkpoint": h.checkpoint} for h in writes if h.checkpoint is not None],
        "holds": [{**row, "terms": orjson.Fragment(row["terms"])} for row in batch.new_holds],
        "logs": [{**row, "metadata": orjson.Fragment(row["metadata"])} for row in batch.log_rows],
        "events": events,
        "deliveries": deliveries,
        "wallet_rows": [{**row, "metadata": orjson.Fragment(row["metadata"])} for row in batch.wallet_rows],
        "budget_rows": [{**row, "metadata": orjson.Fragment(row["metadata"])} for row in batch.budget_rows],
        "wallets": [_wallet(batch, base, w) for w in batch.wallets.values() if w.dirty],
        "budgets": [_budget(batch, base, b) for b in batch.budgets.values() if b.dirty],
        "verify": {
            "platforms": [[p, base.platform_xmin[p]] for p, w in batch.wallets.items() if w.dirty],
            "no_budget": [u for u in users if batch.budget_of_user.get(u) is None],
            "digests": [[p, base.digests[p]] for p in batch.outbox_platforms],
        },
    }
    return Planned(payload, results, batch.exact, batch)


def _wallet(batch: _Traced, base: _Base, wallet: WalletRow) -> dict[str, Any]:
    balance, held, armed, xmin = base.wallets[wallet.id]
    room = batch.room.get(wallet.id)
    charged = wallet.id in batch.spent
    return {
        "id": wallet.id,
        "exact": batch.exact,
        "xmin": xmin,
        "need": None if room is None else balance - held - room,
        "armed0": armed,
        "armed": wallet.armed,
        "floor": wallet.threshold if armed and charged and wallet.threshold is not None else None,
        "balance": wallet.balance,
        "d_balance": wallet.balance - balance,
        "d_held": wallet.held - held,
    }


def _budget(batch: _Traced, base: _Base, budget: BudgetRow) -> dict[str, Any]:
    row, available = base.budgets[budget.id]
    armed, threshold, xmin = bool(row[9]), row[8], row[14]
    room = batch.room.get(budget.id)
    charged = budget.id in batch.spent
    return {
        "id": budget.id,
        "exact": batch.exact,
        "xmin": xmin,
        "need": None if room is None else available - room,
        "armed0": armed,
        "armed": budget.armed,
        "floor": threshold if armed and charged and threshold is not None else None,
        "threshold": threshold,
        "period": row[10],
        "period_start0": row[11],
        "period_start": budget.period_start,
        "max": budget.max,
        "used": budget.used,
        "d_used": budget.used - row[4],
        "d_held": budget.held - row[5],
    }
