"""The PostgreSQL money path (issue 18, ``storage/money/postgres.py``): two money writers (two instances) on one
wallet and its end users' budgets, concurrently, through the production writer. With room to spare every batch
commits in two round trips without row locks held across them; near exhaustion the guards send batches to the
locked path. Either way the amounts are exact, the ledgers' "after" amounts form one unbroken chain in commit
order, and the SPEC §9.6 invariants hold."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import make_settings
from tests.support.invariants import assert_invariants
from tests.support.servers import PostgresServer
from tollway.domain.budgets import BudgetSpec
from tollway.domain.clock import utcnow
from tollway.domain.holds import CandidateTerms, HoldGrant, HoldRequest, Refusal, Release, Settlement
from tollway.domain.platform_settings import BudgetPeriod
from tollway.domain.pricing import Prices
from tollway.domain.usage import CallStatus, UsageRecord
from tollway.services.management.budgets import Budgets
from tollway.services.management.end_users import EndUsers
from tollway.services.management.platforms import Platforms
from tollway.settings import Settings
from tollway.storage.money.writer import MoneyWriter
from tollway.storage.sql.budgets import BudgetStore
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.end_users import EndUserStore
from tollway.storage.sql.migrate import upgrade
from tollway.storage.sql.tables import budget_transactions, budgets, wallet_transactions, wallets
from tollway.storage.sql.tenants import PlatformStore
from tollway.storage.sql.unit_of_work import SqlUnitOfWork

pytestmark = pytest.mark.postgres


async def _tenant(settings: Settings, wallet_nanos: int, budget_nanos: list[int]) -> tuple[str, list[str]]:
    """A platform whose wallet holds ``wallet_nanos`` and one end user per budget amount."""
    await upgrade(settings)
    engine = create_engine(settings)
    try:
        platform_id = (await Platforms(PlatformStore(engine)).create({"name": "PG money"})).platform["id"]
        await _fund(engine, platform_id, wallet_nanos)
        users = []
        budget_service = Budgets(BudgetStore(engine), lambda: SqlUnitOfWork(engine))
        for amount in budget_nanos:
            created, _ = await EndUsers(EndUserStore(engine)).create(platform_id, {"external_id": str(uuid.uuid4())})
            user = created.end_user["id"]
            spec = BudgetSpec(amount, BudgetPeriod.ONE_TIME, False, None, None)
            await budget_service.create(platform_id, user, spec, utcnow())
            users.append(user)
        return platform_id, users
    finally:
        await engine.dispose()


async def _fund(engine: AsyncEngine, platform_id: str, amount: int) -> None:
    async with engine.begin() as conn:
        wallet_id = (
            await conn.execute(sa.select(wallets.c.id).where(wallets.c.platform_id == platform_id))
        ).scalar_one()
        await conn.execute(sa.update(wallets).where(wallets.c.id == wallet_id).values(balance_nanos=amount))
        await conn.execute(
            sa.insert(wallet_transactions).values(
                id=str(uuid.uuid4()), wallet_id=wallet_id, platform_id=platform_id, type="topup", amount_nanos=amount,
                balance_after_nanos=amount, description="pg money", metadata={}, request_id=None, created_at=utcnow(),
            )
        )  # fmt: skip


async def _call(writer: MoneyWriter, platform_id: str, user: str, hold: int, cost: int) -> bool:
    """One paid call: a hold of exactly ``hold`` n$ (wallet and budget, no markup), then a settlement of ``cost``."""
    request_id = "req_" + uuid.uuid4().hex
    terms = (CandidateTerms("m", Prices(hold * 1_000_000, 0), output_limit=1, min_output=1, prompt_tokens=1),)
    request = HoldRequest(request_id, platform_id, user, terms, 1, 0, utcnow() + timedelta(minutes=5))
    grant = await writer.place_hold(request)
    if isinstance(grant, Refusal):
        return False
    assert isinstance(grant, HoldGrant) and grant.wallet_nanos == hold and grant.budget_nanos == hold
    await writer.confirm(grant.hold_id)
    record = UsageRecord(
        request_id, platform_id, user, "chat.completion", None, "m", None, 1, 0, 0, 3, None, cost,
        cost, CallStatus.SUCCESS, "stop", None, "reported", None, {},
    )  # fmt: skip
    assert await writer.submit(Settlement(grant.hold_id, record, cost)) is True
    return True


async def _run(settings: Settings, platform_id: str, users: list[str], calls: int, hold: int, cost: int) -> Any:
    """``calls`` calls, 30 at a time, alternating between two writers and over the end users; the outcome of each
    call, in order, and how many batches each writer committed on each path."""
    engines = [create_engine(settings) for _ in range(2)]
    writers = [MoneyWriter(settings, engine) for engine in engines]
    for writer in writers:
        writer.start()
    outcomes = [False] * calls

    async def caller(first: int) -> None:
        for i in range(first, calls, 30):
            outcomes[i] = await _call(writers[i % 2], platform_id, users[i % len(users)], hold, cost)

    try:
        await asyncio.gather(*(caller(first) for first in range(30)))
    finally:
        for writer in writers:
            await writer.stop()
        for engine in engines:
            await engine.dispose()
    done = [w.postgres for w in writers if w.postgres is not None]
    paths = [(p.cached + p.batches, p.locked, p.cached) for p in done]
    return outcomes, paths


async def _ledgers(settings: Settings) -> tuple[list[Any], list[Any], list[Any]]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            wallet_rows = (await conn.execute(sa.select(wallet_transactions))).all()
            budget_rows = (await conn.execute(sa.select(budget_transactions))).all()
            budget_state = (await conn.execute(sa.select(budgets))).all()
        return wallet_rows, budget_rows, budget_state
    finally:
        await engine.dispose()


def _assert_chain(rows: list[Any], after: str, start: int, sign: int) -> None:
    """Rows in commit order form one chain: each row's "after" amount is the previous one's plus its amount."""
    ordered = sorted(rows, key=lambda r: sign * getattr(r, after))
    assert getattr(ordered[0], after) == start + ordered[0].amount_nanos * (1 if sign < 0 else -1)
    for previous, row in itertools.pairwise(ordered):
        change = row.amount_nanos if sign < 0 else -row.amount_nanos
        assert getattr(row, after) == getattr(previous, after) + change, (previous, row)


@pytest.fixture
def pg_settings(postgres_server: PostgresServer, tmp_path: Path) -> Settings:
    return make_settings(tmp_path, postgres_server.new_database())


def test_two_writers_with_room_commit_every_batch_in_two_round_trips(pg_settings: Settings) -> None:
    wallet, calls, hold, cost = 10**12, 300, 1_000_000, 700_001
    platform_id, users = asyncio.run(_tenant(pg_settings, wallet, [10**11, 10**11, 10**11]))

    outcomes, paths = asyncio.run(_run(pg_settings, platform_id, users, calls, hold, cost))

    assert all(outcomes)
    assert all(batches > 0 and locked == 0 and cached > 0 for batches, locked, cached in paths), paths
    wallet_rows, budget_rows, budget_state = asyncio.run(_ledgers(pg_settings))
    usage = [r for r in wallet_rows if r.type == "usage"]
    assert len(usage) == calls and {r.amount_nanos for r in usage} == {-cost}
    _assert_chain(usage, "balance_after_nanos", wallet, sign=-1)
    assert {b.used_nanos for b in budget_state} == {cost * calls // 3} and {b.held_nanos for b in budget_state} == {0}
    for user in users:
        inference = [r for r in budget_rows if r.end_user_id == user and r.type == "inference"]
        assert len(inference) == calls // 3
        _assert_chain(inference, "used_after_nanos", 0, sign=1)
        assert all(r.remaining_after_nanos == r.max_after_nanos - r.used_after_nanos for r in inference)
    assert_invariants(pg_settings)


def test_two_writers_at_exhaustion_never_overspend(pg_settings: Settings) -> None:
    """The wallet affords 40 calls and one budget 15: the refusals and the last grants are decided on exact rows."""
    hold = 1_000_000
    wallet = 40 * hold
    platform_id, users = asyncio.run(_tenant(pg_settings, wallet, [15 * hold, 10**12, 10**12]))

    outcomes, paths = asyncio.run(_run(pg_settings, platform_id, users, 150, hold, hold))

    granted = sum(outcomes)
    assert 0 < granted <= 40
    assert sum(outcomes[0::3]) <= 15
    assert all(batches + locked > 1 for batches, locked, _ in paths), paths
    wallet_rows, budget_rows, budget_state = asyncio.run(_ledgers(pg_settings))
    usage = [r for r in wallet_rows if r.type == "usage"]
    assert len(usage) == granted
    _assert_chain(usage, "balance_after_nanos", wallet, sign=-1)
    assert sum(-r.amount_nanos for r in usage) == granted * hold
    small = next(b for b in budget_state if b.end_user_id == users[0])
    assert small.used_nanos == sum(outcomes[0::3]) * hold <= small.max_nanos
    inference = [r for r in budget_rows if r.end_user_id == users[0] and r.type == "inference"]
    _assert_chain(inference, "used_after_nanos", 0, sign=1)
    assert all(b.held_nanos == 0 for b in budget_state)
    assert_invariants(pg_settings)


def test_rows_kept_between_batches_are_checked_before_they_are_trusted(pg_settings: Settings) -> None:
    """The writer decides from the rows it kept; a budget created since for an end user it knew without one makes
    that batch conflict, and the hold is placed on the new budget."""
    hold = 1_000_000
    platform_id, _ = asyncio.run(_tenant(pg_settings, 10**12, []))

    async def scenario() -> tuple[HoldGrant | Refusal, HoldGrant | Refusal, int]:
        engine = create_engine(pg_settings)
        writer = MoneyWriter(pg_settings, engine)
        assert writer.postgres is not None
        writer.postgres.idle_s = 3600.0  # however slow this machine is, the second hold is decided from kept rows
        writer.start()
        try:
            created, _ = await EndUsers(EndUserStore(engine)).create(platform_id, {"external_id": "late-budget"})
            user = created.end_user["id"]
            terms = (CandidateTerms("m", Prices(hold * 1_000_000, 0), output_limit=1, min_output=1, prompt_tokens=1),)

            def request() -> HoldRequest:
                return HoldRequest("req_" + uuid.uuid4().hex, platform_id, user, terms, 1, 0, utcnow() + timedelta(1))

            first = await writer.place_hold(request())
            assert isinstance(first, HoldGrant)
            assert await writer.submit(Release(first.hold_id)) is True  # decided from the kept rows
            assert writer.postgres is not None and writer.postgres.cached >= 1 and writer.postgres.conflicts == 0
            spec = BudgetSpec(5 * hold, BudgetPeriod.ONE_TIME, False, None, None)
            await Budgets(BudgetStore(engine), lambda: SqlUnitOfWork(engine)).create(platform_id, user, spec, utcnow())
            second = await writer.place_hold(request())
            return first, second, writer.postgres.conflicts
        finally:
            await writer.stop()
            await engine.dispose()

    first, second, conflicts = asyncio.run(scenario())

    assert isinstance(first, HoldGrant) and first.budget_id is None and first.budget_nanos == 0
    assert isinstance(second, HoldGrant) and second.budget_id is not None and second.budget_nanos == hold
    assert conflicts == 1  # the kept rows said "no budget"; the write was refused and the batch read afresh
    assert_invariants(pg_settings)
