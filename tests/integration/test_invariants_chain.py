"""``assert_invariants`` reads every ledger's "after" amounts as a running balance (``tests/support/ledger_chain.py``),
on SQLite and PostgreSQL: a ledger whose amounts add up (invariant 1 holds) but whose rows were computed from the
same state fails it; the writers that move "after" amounts in less obvious ways (PostgreSQL's one-round-trip path
beside management writes, a late charge across a period reset) pass it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import STORES, database_url_for, make_settings
from tests.integration.test_pg_money_path import _ledgers, _run
from tests.integration.test_pg_money_path import _tenant as _funded_tenant
from tests.support.invariants import assert_invariants
from tests.support.servers import PostgresServer
from tollway.domain.budget_changes import BudgetPatch
from tollway.domain.budgets import BudgetSpec
from tollway.domain.holds import CandidateTerms, Checkpoint, Expire, HoldGrant, HoldRequest, Settlement
from tollway.domain.platform_settings import BudgetPeriod
from tollway.domain.pricing import Prices
from tollway.domain.recovery import recovery_terms
from tollway.domain.usage import CallStatus, UsageRecord
from tollway.services.management.accounts import Accounts, WalletTopup
from tollway.services.management.budgets import Budgets, Movement
from tollway.services.management.end_users import EndUsers
from tollway.services.management.platforms import Platforms
from tollway.settings import Settings
from tollway.storage.money.writer import MoneyWriter
from tollway.storage.sql.budgets import BudgetStore
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.end_users import EndUserStore
from tollway.storage.sql.ledger import LedgerStore
from tollway.storage.sql.migrate import upgrade
from tollway.storage.sql.tables import budget_transactions, budgets, wallet_transactions, wallets
from tollway.storage.sql.tenants import PlatformStore
from tollway.storage.sql.unit_of_work import SqlUnitOfWork

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    config = make_settings(tmp_path, database_url_for(request.param, tmp_path, request))
    asyncio.run(upgrade(config))
    return config


async def _tenant(settings: Settings) -> tuple[str, str, str, str]:
    """A platform, its wallet, an end user and their budget of $1 (its opening row written by the service)."""
    engine = create_engine(settings)
    try:
        platform_id = (await Platforms(PlatformStore(engine)).create({"name": "Chain"})).platform["id"]
        created, _ = await EndUsers(EndUserStore(engine)).create(platform_id, {"external_id": "chain"})
        user = created.end_user["id"]
        budgets_service = Budgets(BudgetStore(engine), lambda: SqlUnitOfWork(engine))
        change = await budgets_service.create(platform_id, user, BudgetSpec(10**9, BudgetPeriod.ONE_TIME, False), NOW)
        async with engine.connect() as conn:
            wallet_id = (await conn.execute(sa.select(wallets.c.id))).scalar_one()
    finally:
        await engine.dispose()
    return platform_id, wallet_id, user, change.budget.id


def _wallet_row(platform_id: str, wallet_id: str, kind: str, amount: int, after: int) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()), "wallet_id": wallet_id, "platform_id": platform_id, "type": kind,
        "amount_nanos": amount, "balance_after_nanos": after, "description": None, "metadata": {},
        "request_id": "req_" + uuid.uuid4().hex, "created_at": NOW,
    }  # fmt: skip


def _budget_row(platform_id: str, user: str, budget_id: str, amount: int, used_after: int) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()), "budget_id": budget_id, "platform_id": platform_id, "end_user_id": user,
        "type": "inference", "amount_nanos": amount, "max_after_nanos": 10**9, "used_after_nanos": used_after,
        "remaining_after_nanos": 10**9 - used_after, "reason": None, "metadata": {},
        "request_id": "req_" + uuid.uuid4().hex, "created_at": NOW,
    }  # fmt: skip


async def _write(
    settings: Settings, wallet_rows: list[dict[str, object]], budget_rows: list[dict[str, object]]
) -> None:
    """Appends the rows and sets the accounts to the sum of their ledgers (invariant 1 keeps holding)."""
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            for row in wallet_rows:
                await conn.execute(sa.insert(wallet_transactions).values(row))
                await conn.execute(
                    sa.update(wallets)
                    .where(wallets.c.id == row["wallet_id"])
                    .values(balance_nanos=wallets.c.balance_nanos + row["amount_nanos"])
                )
            for row in budget_rows:
                await conn.execute(sa.insert(budget_transactions).values(row))
                await conn.execute(
                    sa.update(budgets)
                    .where(budgets.c.id == row["budget_id"])
                    .values(used_nanos=budgets.c.used_nanos - row["amount_nanos"])
                )
    finally:
        await engine.dispose()


def test_a_chained_ledger_passes_and_two_rows_from_one_state_fail(settings: Settings) -> None:
    platform_id, wallet_id, user, budget_id = asyncio.run(_tenant(settings))
    wallet_ok = [
        _wallet_row(platform_id, wallet_id, "topup", 1_000, 1_000),
        _wallet_row(platform_id, wallet_id, "usage", -100, 900),
    ]
    asyncio.run(_write(settings, wallet_ok, [_budget_row(platform_id, user, budget_id, -100, 100)]))
    assert_invariants(settings)

    # A second writer that charged from the same states: every sum still agrees, the running balances do not.
    asyncio.run(
        _write(
            settings,
            [_wallet_row(platform_id, wallet_id, "usage", -100, 900)],
            [_budget_row(platform_id, user, budget_id, -100, 100)],
        )
    )
    with pytest.raises(AssertionError) as failure:
        assert_invariants(settings)
    message = str(failure.value)
    assert f"wallet {wallet_id}: at balance 900" in message
    assert f"budget {budget_id}: at max 1000000000 used 100" in message
    assert "!= ledger" not in message  # invariant 1 holds: only the chain is broken


@pytest.mark.postgres
def test_two_money_writers_beside_management_writes_keep_every_chain(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """PostgreSQL's one-round-trip path moves a batch's "after" amounts by what other writers committed meanwhile
    (``tollway_money_apply``'s offsets): two money writers settle calls while wallet top-ups, budget top-ups,
    debits and PATCHes of max commit between their snapshots and their writes. Every chain still holds."""
    settings = make_settings(tmp_path, postgres_server.new_database())
    platform_id, users = asyncio.run(_funded_tenant(settings, 10**12, [10**11, 10**11, 10**11]))
    hold, cost, calls = 1_000_000, 700_001, 600

    async def management(done: asyncio.Event) -> int:
        engine = create_engine(settings)
        service = Budgets(BudgetStore(engine), lambda: SqlUnitOfWork(engine))
        accounts = Accounts(LedgerStore(engine))
        steps = 0
        try:
            while not done.is_set():
                user = users[steps % len(users)]
                actions = [
                    accounts.topup_action(platform_id, WalletTopup(1_000 + steps, None, {}), None),
                    service.topup(platform_id, user, Movement(2_000 + steps, None)),
                    service.debit(platform_id, user, Movement(300 + steps, "chain")),
                    service.update(platform_id, user, BudgetPatch(max_nanos=10**11 + 10 * steps)),
                ]
                async with SqlUnitOfWork(engine) as uow:
                    await actions[steps % len(actions)](uow)
                    await uow.commit()
                steps += 1
                await asyncio.sleep(0)
        finally:
            await engine.dispose()
        return steps

    async def scenario() -> tuple[Any, int]:
        done = asyncio.Event()
        side = asyncio.create_task(management(done))
        try:
            result = await _run(settings, platform_id, users, calls, hold, cost)
        finally:
            done.set()
        return result, await side

    (outcomes, paths), steps = asyncio.run(scenario())
    assert all(outcomes) and steps >= 4, (outcomes.count(False), steps)  # management commits interleaved
    assert any(cached > 0 for _, _, cached in paths), paths  # the one-round-trip path ran
    assert_invariants(settings)


def test_late_charges_across_a_period_reset_keep_the_chains(settings: Settings) -> None:
    """A stream captured by the sweeper from its checkpoint (3 units), a period reset, another call in the new
    period, then the stream's journaled settlement (1 unit, late): the refund comes back to the wallet and is taken
    off the budget's ``used`` only as far as the new period used it. Every "after" amount chains."""
    unit = 1_000_000
    platform_id, _ = asyncio.run(_funded_tenant(settings, 10**12, []))
    clock = [datetime(2026, 1, 31, 23, 0, tzinfo=UTC)]

    async def scenario() -> None:
        engine = create_engine(settings)
        budgets_service = Budgets(BudgetStore(engine), lambda: SqlUnitOfWork(engine))
        created, _ = await EndUsers(EndUserStore(engine)).create(platform_id, {"external_id": "late"})
        user = created.end_user["id"]
        await budgets_service.create(platform_id, user, BudgetSpec(100 * unit, BudgetPeriod.MONTHLY), clock[0])
        writer = MoneyWriter(settings, engine, clock=lambda: clock[0])
        writer.start()
        candidates = {"m": {"input": unit * 1_000_000, "output": 0, "provider_id": None, "upstream_model": "m"}}
        recovery = recovery_terms("m", "chat.completion", None, {}, 1, candidates)
        terms = (CandidateTerms("m", Prices(unit * 1_000_000, 0), output_limit=1, min_output=1, prompt_tokens=1),)

        async def hold() -> tuple[str, str]:
            request_id = "req_" + uuid.uuid4().hex
            request = HoldRequest(request_id, platform_id, user, terms, 1, 0, clock[0] + timedelta(minutes=1), recovery)
            grant = await writer.place_hold(request)
            assert isinstance(grant, HoldGrant)
            await writer.confirm(grant.hold_id)
            return grant.hold_id, request_id

        def settlement(hold_id: str, request_id: str, units: int) -> Settlement:
            record = UsageRecord(
                request_id, platform_id, user, "chat.completion", None, "m", None, units, 0, 0, 0, None, units * unit,
                units * unit, CallStatus.SUCCESS, "stop", None, "reported", None, {},
            )  # fmt: skip
            return Settlement(hold_id, record, units * unit)

        try:
            stream, stream_request = await hold()
            progress = {"model_id": "m", "usage": [3, 0, 0]}
            assert await writer.submit(Checkpoint(stream, progress, stream_request)) is True
            clock[0] += timedelta(minutes=2)
            assert await writer.submit(Expire(stream)) is True  # the sweeper: 3 units from the checkpoint
            clock[0] += timedelta(hours=1)  # past the month's end: the next batch resets the budget
            second, second_request = await hold()
            assert await writer.submit(settlement(second, second_request, 2)) is True
            assert await writer.submit(settlement(stream, stream_request, 1)) is True  # late: 2 units back
        finally:
            await writer.stop()
            await engine.dispose()

    asyncio.run(scenario())
    assert_invariants(settings)
    wallet_rows, budget_rows, _ = asyncio.run(_ledgers(settings))
    assert sorted(r.amount_nanos for r in wallet_rows if r.type != "topup") == [-3 * unit, -2 * unit, 2 * unit]
    assert sorted((r.type, r.amount_nanos) for r in budget_rows if r.type != "opening_balance") == [
        ("inference", -3 * unit),
        ("inference", -2 * unit),
        ("inference_correction", 2 * unit),
        ("reset", 3 * unit),
    ]
