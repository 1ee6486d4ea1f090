"""A Hypothesis state machine over one budget on a real database (SQLite, and PostgreSQL): topup, debit, PATCH of
max, period and suspension, holds placed and then settled or released through the production money writer (the
same batches inference uses), time moving forward through period boundaries (lazy resets and the
``reset_due_budgets`` job). Time is passed explicitly; nothing sleeps. After every step the SPEC §9.6 invariants
are checked on the committed rows:

- remaining (max − used) equals the sum of the budget's ledger amounts, and every row's ``remaining_after`` is
  its ``max_after − used_after``; the rows' "after" amounts chain from (0, 0) to the budget's current max and used
  (``tests/support/ledger_chain.py``);
- held equals the sum of the holds still open, and available = remaining − held ≥ 0;
- ledger rows are append-only: every row seen before is still there, unchanged;
- at most one ``inference`` row per request id.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import STORES, database_url_for, make_settings
from tests.support.ledger_chain import BudgetEntry, budget_problems
from tollway.domain.budget_changes import BudgetPatch
from tollway.domain.budgets import BudgetSpec, period_start_at
from tollway.domain.holds import CandidateTerms, HoldGrant, HoldRequest, Refusal, Release, Settlement
from tollway.domain.platform_settings import BudgetPeriod
from tollway.domain.ports.management import Action
from tollway.domain.pricing import Prices
from tollway.domain.usage import CallStatus, UsageRecord
from tollway.errors import BudgetExhausted, InvalidRequest
from tollway.services.management.budgets import Budgets, Movement
from tollway.services.management.end_users import EndUsers
from tollway.services.management.platforms import Platforms
from tollway.storage.money.writer import MoneyWriter
from tollway.storage.sql.budgets import BudgetStore, reset_due_budgets
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.end_users import EndUserStore
from tollway.storage.sql.migrate import upgrade
from tollway.storage.sql.tables import budget_transactions, budgets, wallet_transactions, wallets
from tollway.storage.sql.tenants import PlatformStore
from tollway.storage.sql.unit_of_work import SqlUnitOfWork

USD = 10**9
START = datetime(2026, 1, 30, 18, 0, tzinfo=UTC)  # near a month's end, so monthly boundaries come up quickly
amounts = st.integers(min_value=1, max_value=5 * USD)


@dataclass
class Harness:
    """One event loop and one migrated database per store, shared by every example, with the money writer the
    inference path uses; its clock is the machine's (``clock[0]``)."""

    runner: asyncio.Runner
    engine: AsyncEngine
    platform_id: str
    postgres: bool
    money: MoneyWriter
    clock: list[datetime]

    def run(self, coroutine: Any) -> Any:
        return self.runner.run(coroutine)

    def place_hold(self, end_user_id: str, request_id: str, amount: int) -> HoldGrant | Refusal:
        """A hold of exactly ``amount`` n$ on the budget: one prompt token priced at ``amount`` n$, no output."""
        terms = (CandidateTerms("m", Prices(amount * 1_000_000, 0), output_limit=1, min_output=1, prompt_tokens=1),)
        expires = self.clock[0] + timedelta(hours=1)
        request = HoldRequest(request_id, self.platform_id, end_user_id, terms, 1, 0, expires)
        grant = self.run(self.money.place_hold(request))
        if isinstance(grant, HoldGrant):
            assert grant.budget_nanos == amount
        return grant

    def settle(self, end_user_id: str, request_id: str, hold_id: str, charge: int) -> int:
        """Capture the hold with ``charge`` n$ for the budget; returns what the budget was actually charged."""
        record = UsageRecord(
            request_id, self.platform_id, end_user_id, "chat.completion", None, "m", None, 0, 0, 0, 0, None, 0,
            charge, CallStatus.SUCCESS, "stop", None, "reported", None, {},
        )  # fmt: skip
        assert self.run(self._submit(Settlement(hold_id, record, charge))) is True

        async def charged() -> int:
            async with self.engine.connect() as conn:
                amount = (
                    await conn.execute(
                        sa.select(budget_transactions.c.amount_nanos).where(
                            budget_transactions.c.request_id == request_id, budget_transactions.c.type == "inference"
                        )
                    )
                ).scalar_one()
            return -int(amount)

        return int(self.run(charged()))

    def release(self, hold_id: str) -> None:
        assert self.run(self._submit(Release(hold_id))) is True

    async def _submit(self, command: Settlement | Release) -> Any:
        return await self.money.submit(command)


@pytest.fixture(scope="module", params=STORES)
def harness(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("budget-machine")
    config = make_settings(Path(tmp), database_url_for(request.param, Path(tmp), request))
    runner = asyncio.Runner()
    try:
        runner.run(upgrade(config))
        engine = create_engine(config)
        created = runner.run(Platforms(PlatformStore(engine)).create({"name": "Machine"}))
        platform_id = created.platform["id"]
        runner.run(_fund_wallet(engine, platform_id))
        clock = [START]
        money = MoneyWriter(config, engine, clock=lambda: clock[0])
        runner.run(_start(money))
        yield Harness(runner, engine, platform_id, request.param == "postgres", money, clock)
        runner.run(money.stop())
        runner.run(engine.dispose())
    finally:
        runner.close()


def _budgets(engine: AsyncEngine) -> Budgets:
    return Budgets(BudgetStore(engine), lambda: SqlUnitOfWork(engine))


async def _commit(engine: AsyncEngine, action: Action[Any]) -> Any:
    """``action`` in a unit of work of its own, committed (as an operation without an Idempotency-Key runs)."""
    async with SqlUnitOfWork(engine) as uow:
        result = await action(uow)
        await uow.commit()
    return result


async def _start(money: MoneyWriter) -> None:
    money.start()


async def _fund_wallet(engine: AsyncEngine, platform_id: str) -> None:
    """The wallet pays the (zero) raw cost; fund it so only the budget decides."""
    amount = 10**15
    async with engine.begin() as conn:
        wallet_id = (
            await conn.execute(sa.select(wallets.c.id).where(wallets.c.platform_id == platform_id))
        ).scalar_one()
        await conn.execute(sa.update(wallets).where(wallets.c.id == wallet_id).values(balance_nanos=amount))
        await conn.execute(
            sa.insert(wallet_transactions).values(
                id=str(uuid.uuid4()), wallet_id=wallet_id, platform_id=platform_id, type="topup", amount_nanos=amount,
                balance_after_nanos=amount, description="state machine", metadata={}, request_id=None,
                created_at=START,
            )
        )  # fmt: skip


class BudgetMachine(RuleBasedStateMachine):
    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.h = harness
        self.budgets = _budgets(harness.engine)
        self.now = START
        harness.clock[0] = START
        self.holds: dict[str, tuple[str, int]] = {}  # request id -> (hold id, budget n$ held)
        self.seen_holds = 0
        self.run_id = uuid.uuid4().hex[:24]  # request ids are unique in the database, ordered within this run
        self.seen: dict[str, tuple[Any, ...]] = {}  # ledger row id -> its values when first seen
        self.end_user_id = ""

    # -- helpers -------------------------------------------------------------------------------------------------

    def _in_transaction(self, action: Action[Any]) -> Any:
        return self.h.run(_commit(self.h.engine, action))

    def _raw_budget(self) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            async with self.h.engine.connect() as conn:
                row = (await conn.execute(sa.select(budgets).where(budgets.c.end_user_id == self.end_user_id))).one()
                return dict(row._mapping)

        return self.h.run(read())  # type: ignore[no-any-return]

    def _ledger(self) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            query = sa.select(budget_transactions).where(budget_transactions.c.end_user_id == self.end_user_id)
            async with self.h.engine.connect() as conn:
                return [dict(row._mapping) for row in (await conn.execute(query)).all()]

        return self.h.run(read())  # type: ignore[no-any-return]

    def _current(self) -> Any:
        """The budget as an operation sees it now (a due reset applied first)."""
        return self.h.run(self.budgets.get(self.h.platform_id, self.end_user_id, self.now))

    def _patch(self, patch: BudgetPatch) -> Any:
        return self._in_transaction(self.budgets.update(self.h.platform_id, self.end_user_id, patch, self.now))

    # -- setup ---------------------------------------------------------------------------------------------------

    @initialize(
        period=st.sampled_from(list(BudgetPeriod)),
        max_nanos=st.integers(0, 20 * USD),
        replenish=st.one_of(st.none(), amounts),
        threshold=st.one_of(st.none(), st.integers(0, 10 * USD)),
    )
    def create(self, period: BudgetPeriod, max_nanos: int, replenish: int | None, threshold: int | None) -> None:
        creation, _ = self.h.run(
            EndUsers(EndUserStore(self.h.engine)).create(self.h.platform_id, {"external_id": str(uuid.uuid4())})
        )
        self.end_user_id = creation.end_user["id"]
        auto = replenish is not None and period is not BudgetPeriod.ONE_TIME
        spec = BudgetSpec(max_nanos, period, auto, replenish if auto else None, threshold)
        self.h.run(self.budgets.create(self.h.platform_id, self.end_user_id, spec, self.now))

    # -- management operations -----------------------------------------------------------------------------------

    @rule(amount=amounts)
    def topup(self, amount: int) -> None:
        before = self._current()
        change = self._in_transaction(
            self.budgets.topup(self.h.platform_id, self.end_user_id, Movement(amount, None), self.now)
        )
        assert change.budget.max_nanos == before.max_nanos + amount
        assert change.transaction["amount_nanos"] == amount

    @rule(amount=amounts)
    def debit(self, amount: int) -> None:
        before = self._current()
        rows = len(self._ledger())
        action = self.budgets.debit(self.h.platform_id, self.end_user_id, Movement(amount, "test"), self.now)
        if amount > before.available_nanos:
            with pytest.raises(BudgetExhausted):
                self._in_transaction(action)
            assert len(self._ledger()) == rows  # nothing written
            return
        change = self._in_transaction(action)
        assert change.budget.used_nanos == before.used_nanos + amount

    @rule(new_max=st.integers(0, 30 * USD))
    def patch_max(self, new_max: int) -> None:
        before = self._current()
        if new_max != before.max_nanos and new_max < before.used_nanos + before.held_nanos:
            with pytest.raises(InvalidRequest):
                self._patch(BudgetPatch(max_nanos=new_max))
            return
        after = self._patch(BudgetPatch(max_nanos=new_max))
        assert after.max_nanos == new_max

    @rule(period=st.sampled_from(list(BudgetPeriod)))
    def patch_period(self, period: BudgetPeriod) -> None:
        before = self._current()
        if before.auto_replenish and period is BudgetPeriod.ONE_TIME:
            with pytest.raises(InvalidRequest):
                self._patch(BudgetPatch(period=period))
            return
        after = self._patch(BudgetPatch(period=period))
        assert after.used_nanos == before.used_nanos  # a period change never resets
        if period is not before.period:
            assert after.period_start == (period_start_at(period, self.now) or before.created_at)

    @rule(flag=st.booleans())
    def suspend(self, flag: bool) -> None:
        before = self._current()
        rows = len(self._ledger())
        after = self._patch(BudgetPatch(is_suspended=flag))
        assert after.is_suspended is flag
        flipped = before.is_suspended is not flag
        assert len(self._ledger()) == rows + (1 if flipped else 0)

    # -- time ----------------------------------------------------------------------------------------------------

    @rule(hours=st.integers(1, 24 * 75))
    def advance(self, hours: int) -> None:
        self.now += timedelta(hours=hours)
        self.h.clock[0] = self.now

    @rule()
    def reset_job(self) -> None:
        self.h.run(reset_due_budgets(self.h.engine, self.now))
        row = self._raw_budget()
        start = period_start_at(BudgetPeriod(row["period"]), self.now)
        if start is not None:
            assert row["period_start"].replace(tzinfo=UTC) >= start

    # -- the inference path: hold, then settle or release --------------------------------------------------------

    @rule(data=st.data())
    def hold(self, data: st.DataObject) -> None:
        """The inference path's hold placement (the money writer's batch) on this budget, within what is available
        (the amount is drawn from it, so that holds are placed often)."""
        available = self._current().available_nanos
        if available < 1:
            return
        amount = data.draw(st.integers(1, available))
        # Ids in creation order: the hold a later rule picks must not depend on random ids, or Hypothesis would see
        # different draws (bounds derived from the hold) when it replays the same steps.
        request_id = f"req_{self.run_id}{self.seen_holds:08d}"
        self.seen_holds += 1
        grant = self.h.place_hold(self.end_user_id, request_id, amount)
        if self._current().is_suspended:
            assert grant is Refusal.SUSPENDED  # a suspended budget blocks inference (§5.5), holds included
            return
        assert isinstance(grant, HoldGrant), grant
        self.holds[request_id] = (grant.hold_id, amount)

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.holds)))
        hold_id, hold = self.holds.pop(request_id)
        charge = data.draw(st.integers(0, 3 * hold))  # below, at and above the hold
        room = self._current().available_nanos + hold
        charged = self.h.settle(self.end_user_id, request_id, hold_id, charge)
        assert charged == min(charge, room)  # the excess is taken as far as available goes

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.holds)))
        hold_id, _ = self.holds.pop(request_id)
        self.h.release(hold_id)

    # -- invariants ----------------------------------------------------------------------------------------------

    @invariant()
    def money_adds_up(self) -> None:
        if not self.end_user_id:
            return
        row = self._raw_budget()
        rows = self._ledger()
        remaining = row["max_nanos"] - row["used_nanos"]
        assert remaining == sum(t["amount_nanos"] for t in rows)
        assert row["held_nanos"] == sum(amount for _, amount in self.holds.values())
        assert remaining - row["held_nanos"] >= 0
        assert all(t["remaining_after_nanos"] == t["max_after_nanos"] - t["used_after_nanos"] for t in rows)
        after = ("max_after_nanos", "used_after_nanos", "remaining_after_nanos")
        entries = [BudgetEntry(t["id"], t["type"], t["amount_nanos"], *(t[k] for k in after)) for t in rows]
        assert budget_problems(row["id"], entries, row["max_nanos"], row["used_nanos"]) == []
        inference = [t["request_id"] for t in rows if t["type"] == "inference"]
        assert len(inference) == len(set(inference))

    @invariant()
    def ledger_is_append_only(self) -> None:
        if not self.end_user_id:
            return
        current = {t["id"]: _frozen(t) for t in self._ledger()}
        for txn_id, values in self.seen.items():
            assert current.get(txn_id) == values, f"ledger row {txn_id} changed or vanished"
        self.seen = current


def _frozen(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((key, repr(value)) for key, value in row.items()))


def test_budget_state_machine(harness: Harness) -> None:
    examples = 8 if harness.postgres else 15
    run_state_machine_as_test(
        lambda: BudgetMachine(harness),
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )


def test_reset_job_resets_every_due_budget_once(harness: Harness) -> None:
    """``reset_due_budgets``: every active daily/monthly budget past its boundary gets one reset row; one-time,
    inactive and current budgets are left alone; running it again finds nothing."""
    store = _budgets(harness.engine)
    users = EndUsers(EndUserStore(harness.engine))
    start = datetime(2026, 3, 10, 12, tzinfo=UTC)
    ids: dict[str, str] = {}
    for name, period in [("daily", "daily"), ("monthly", "monthly"), ("one_time", "one_time"), ("off", "daily")]:
        creation, _ = harness.run(users.create(harness.platform_id, {"external_id": f"job-{uuid.uuid4()}"}))
        ids[name] = creation.end_user["id"]
        spec = BudgetSpec(5 * USD, BudgetPeriod(period), period == "daily", 2 * USD if period == "daily" else None)
        harness.run(store.create(harness.platform_id, ids[name], spec, start))

    async def state(end_user_id: str) -> tuple[int, int, datetime, int]:
        async with harness.engine.connect() as conn:
            row = (await conn.execute(sa.select(budgets).where(budgets.c.end_user_id == end_user_id))).one()
            resets = (
                await conn.execute(
                    sa.select(sa.func.count()).where(
                        budget_transactions.c.end_user_id == end_user_id, budget_transactions.c.type == "reset"
                    )
                )
            ).scalar_one()
        return row.max_nanos, row.used_nanos, row.period_start.replace(tzinfo=UTC), int(resets)

    async def use(end_user_id: str) -> None:
        await _commit(harness.engine, store.debit(harness.platform_id, end_user_id, Movement(USD, "use"), start))

    for end_user_id in ids.values():
        harness.run(use(end_user_id))
    assert all(harness.run(state(end_user_id))[3] == 0 for end_user_id in ids.values())
    off_patch = store.update(harness.platform_id, ids["off"], BudgetPatch(is_active=False), start)

    harness.run(_commit(harness.engine, off_patch))
    later = datetime(2026, 5, 2, 0, 0, 30, tzinfo=UTC)  # daily and monthly boundaries long passed
    harness.run(reset_due_budgets(harness.engine, start))  # the state machine's budgets share this database
    assert harness.run(reset_due_budgets(harness.engine, start)) == 0
    assert harness.run(reset_due_budgets(harness.engine, later)) >= 2
    assert harness.run(reset_due_budgets(harness.engine, later)) == 0

    assert harness.run(state(ids["daily"])) == (2 * USD, 0, datetime(2026, 5, 2, tzinfo=UTC), 1)
    assert harness.run(state(ids["monthly"])) == (5 * USD, 0, datetime(2026, 5, 1, tzinfo=UTC), 1)
    assert harness.run(state(ids["one_time"]))[1:] == (USD, start, 0)
    assert harness.run(state(ids["off"]))[1] == USD  # inactive: left to the lazy reset of its next operation


def test_low_balance_arming_and_the_event_hook(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """§9.8: the debit or inference row that leaves remaining ≤ threshold while armed fires ``budget.low_balance``
    once and disarms; a topup, reset or PATCH leaving remaining above the threshold re-arms. Events reach the
    ``record_events`` hook inside the ledger row's transaction."""
    fired: list[tuple[str, list[str]]] = []

    async def capture(conn: Any, budget: Any, transaction: Any, events: Any) -> None:
        fired.append((transaction["type"], [str(event) for event in events]))

    monkeypatch.setattr("tollway.storage.sql.budgets.record_events", capture)
    store = _budgets(harness.engine)
    now = datetime(2026, 7, 15, 12, tzinfo=UTC)
    creation, _ = harness.run(
        EndUsers(EndUserStore(harness.engine)).create(harness.platform_id, {"external_id": f"low-{uuid.uuid4()}"})
    )
    user = creation.end_user["id"]
    harness.run(
        store.create(harness.platform_id, user, BudgetSpec(10 * USD, BudgetPeriod.DAILY, True, 10 * USD, 5 * USD), now)
    )

    def step(action: Action[Any]) -> bool:
        async def run() -> bool:
            async with SqlUnitOfWork(harness.engine) as uow:
                await action(uow)
                query = sa.select(budgets.c.low_balance_armed).where(budgets.c.end_user_id == user)
                row = (await uow.connection.execute(query)).one()
                await uow.commit()
                return bool(row.low_balance_armed)

        return harness.run(run())  # type: ignore[no-any-return]

    def debit(usd: float) -> bool:
        return step(store.debit(harness.platform_id, user, Movement(int(usd * USD), "use"), now))

    def topup(usd: float) -> bool:
        return step(store.topup(harness.platform_id, user, Movement(int(usd * USD), None), now))

    assert debit(4) is True  # remaining 6 > 5
    assert debit(1) is False  # remaining 5 ≤ 5: fires, disarms
    assert debit(1) is False  # remaining 4: no second event
    assert topup(0.5) is False  # remaining 4.5, still ≤ 5: stays disarmed
    assert topup(1) is True  # remaining 5.5 > 5: re-armed
    assert (
        step(
            store.update(
                harness.platform_id, user, BudgetPatch(low_balance_threshold_nanos=6 * USD, threshold_set=True), now
            )
        )
        is True
    )

    def armed() -> bool:
        async def read() -> bool:
            async with harness.engine.connect() as conn:
                query = sa.select(budgets.c.low_balance_armed).where(budgets.c.end_user_id == user)
                return bool((await conn.execute(query)).scalar_one())

        return bool(harness.run(read()))

    harness.clock[0] = now
    request_id = "req_" + uuid.uuid4().hex
    grant = harness.place_hold(user, request_id, USD // 4)
    assert isinstance(grant, HoldGrant)
    assert harness.settle(user, request_id, grant.hold_id, USD // 2) == USD // 2
    assert armed() is False  # remaining 5 ≤ 6 while armed: an inference charge fires and disarms
    assert step(store.update(harness.platform_id, user, BudgetPatch(max_nanos=20 * USD), now)) is True  # PATCH re-arms
    assert debit(9) is False  # remaining 6 ≤ 6
    # The next day's reset (replenish to 10, used 0) leaves 10 > 6: re-armed.
    assert harness.run(reset_due_budgets(harness.engine, now + timedelta(days=1))) >= 1
    assert step(store.topup(harness.platform_id, user, Movement(1, None), now + timedelta(days=1))) is True
    low = [kind for kind, events in fired if "budget.low_balance" in events]
    # Inference charges disarm in the money writer's batch (checked above); their events join the webhook outbox
    # with the webhooks issue, so the management hook sees the two debits only.
    assert low == ["debit", "debit"]
    assert ("topup", ["budget.topped_up"]) in fired
