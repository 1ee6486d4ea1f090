"""``tollway_money_apply`` writes a batch's wallets and budgets set-based (migration 0017): one guarded ``UPDATE`` per
table for any number of rows, the rows locked in id order first, the budgets before the wallets (migration 0019), so
the wallet row every call writes is never held while a budget is waited for; the locked path takes the same order. A
guard failing on one row of fifty refuses the whole batch; two writers updating overlapping budgets in opposite
orders never deadlock; the holds are locked ``FOR NO KEY UPDATE`` (migration 0020); the migrations go down to
0019's, 0017's and 0016's functions and back, and the writer works with each."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import sqlalchemy as sa
from alembic import command

from tests.conftest import make_settings
from tests.support.invariants import assert_invariants
from tests.support.money_seed import COST, HOLD, funded_tenant, hold_request, settlement
from tests.support.servers import PostgresServer
from tollway.domain.clock import utcnow
from tollway.domain.holds import HoldGrant, MoneyCommand
from tollway.settings import Settings
from tollway.storage.money.batch import Result
from tollway.storage.money.driver_sql import DriverSQL
from tollway.storage.money.postgres import APPLY, CONFLICT, SNAPSHOT, Planned, PostgresMoney, _keys, plan
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.migrate import alembic_config
from tollway.storage.sql.tables import budget_transactions, budgets, holds, usage_logs, wallet_transactions, wallets

pytestmark = pytest.mark.postgres

WALLET_LAST = importlib.import_module("tollway.storage.sql.migrations.versions.0019_pg_money_wallet_last").APPLY
SET_BASED = importlib.import_module("tollway.storage.sql.migrations.versions.0017_pg_money_set_based").APPLY
APPLY_0016 = importlib.import_module("tollway.storage.sql.migrations.versions.0016_pg_money_functions").APPLY
HOLDS_NO_KEY = importlib.import_module("tollway.storage.sql.migrations.versions.0020_pg_money_holds_no_key_lock").APPLY

WALLET = 10**13
BUDGET = 10**11
SQL = DriverSQL("postgresql")


@pytest.fixture
def pg_settings(postgres_server: PostgresServer, tmp_path: Path) -> Settings:
    return make_settings(tmp_path, postgres_server.new_database())


def _dsn(settings: Settings) -> str:
    return "postgresql://" + settings.database_url.split("://", 1)[1]


async def _holds(money: PostgresMoney, platform_id: str, users: list[str]) -> list[MoneyCommand]:
    """One batch of a hold per end user, in the order given; their settlements."""
    requests = [hold_request(platform_id, user) for user in users]
    grants = await money.apply(list(requests), utcnow(), SQL)
    assert all(isinstance(g, HoldGrant) and g.budget_nanos == HOLD for g in grants), grants
    return [settlement(g, r) for g, r in zip(grants, requests, strict=True) if isinstance(g, HoldGrant)]


async def _state(settings: Settings) -> dict[str, Any]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return {
                "wallets": (await conn.execute(sa.select(wallets.c.balance_nanos, wallets.c.held_nanos))).all(),
                "budgets": {r.id: (r.used_nanos, r.held_nanos) for r in (await conn.execute(sa.select(budgets))).all()},
                "holds": sorted((await conn.execute(sa.select(holds.c.status))).scalars()),
                "logs": (await conn.execute(sa.select(sa.func.count()).select_from(usage_logs))).scalar_one(),
                "wallet_rows": (await conn.execute(sa.select(wallet_transactions))).all(),
                "budget_rows": (await conn.execute(sa.select(budget_transactions))).all(),
            }
    finally:
        await engine.dispose()


def test_one_budget_of_fifty_failing_its_guard_refuses_the_batch_then_the_retry_commits_it(
    pg_settings: Settings,
) -> None:
    platform_id, users = asyncio.run(funded_tenant(pg_settings, 50, WALLET, BUDGET, "set-based"))

    async def scenario() -> tuple[asyncpg.PostgresError, str, dict[str, Any], dict[str, Any], PostgresMoney]:
        engine = create_engine(pg_settings)
        money = PostgresMoney(pg_settings.database_url, engine)
        money.idle_s = 3600.0  # the settlements are decided from the rows kept from the holds' batch
        probe = await asyncpg.connect(_dsn(pg_settings))
        try:
            settlements = await _holds(money, platform_id, users)
            # Another instance's management call changes one budget's low-balance threshold behind the writer:
            # a guard of the settlements' batch (nothing a low-balance rule reads may have changed).
            changed = await probe.fetchval(
                "UPDATE budgets SET low_balance_threshold_nanos = 1 WHERE end_user_id = $1 RETURNING id", users[17]
            )
            keys = _keys(settlements)
            cached = money.cache.snapshot(*keys)
            assert cached is not None
            planned = plan(settlements, utcnow(), SQL, cached, keys[2])
            assert planned is not None and not planned.exact and len(planned.payload["budgets"]) == 50
            before = await _state(pg_settings)
            with pytest.raises(asyncpg.PostgresError) as refused:
                await probe.fetchval(APPLY, orjson.dumps(planned.payload).decode())
            untouched = await _state(pg_settings)
            assert untouched == before
            results = await money.apply(settlements, utcnow(), SQL)
            assert results == [True] * 50
            return refused.value, changed, before, await _state(pg_settings), money
        finally:
            await probe.close()
            await money.close()
            await engine.dispose()

    refused, changed, before, after, money = asyncio.run(scenario())

    assert refused.sqlstate == CONFLICT and str(refused) == f"money batch conflict: budget {changed}"
    assert before["holds"] == ["active"] * 50 and before["logs"] == 0
    assert set(before["budgets"].values()) == {(0, HOLD)}
    # The writer's own path: the conflict, then the batch read afresh and written, exactly once, with no lock path.
    assert money.conflicts == 1 and money.locked == 0
    assert after["holds"] == ["captured"] * 50 and after["logs"] == 50
    assert set(after["budgets"].values()) == {(COST, 0)}
    assert after["wallets"] == [(WALLET - 50 * COST, 0)]
    usage = sorted((r for r in after["wallet_rows"] if r.type == "usage"), key=lambda r: -r.balance_after_nanos)
    assert [r.balance_after_nanos for r in usage] == [WALLET - (i + 1) * COST for i in range(50)]
    inference = [r for r in after["budget_rows"] if r.type == "inference"]
    assert len(inference) == 50 and {(r.used_after_nanos, r.remaining_after_nanos) for r in inference} == {
        (COST, BUDGET - COST)
    }
    assert_invariants(pg_settings)


async def _decided(conn: asyncpg.Connection, commands: list[MoneyCommand], descending: bool) -> Planned:
    """The batch as the writer decides it from rows read afresh, its budgets listed in id order, or reversed."""
    keys = _keys(commands)
    snapshot = orjson.loads(await conn.fetchval(SNAPSHOT, *keys))
    planned = plan(commands, utcnow(), SQL, snapshot, keys[2])
    assert planned is not None and not planned.exact
    del planned.payload["verify"]
    planned.payload["budgets"].sort(key=lambda b: b["id"], reverse=descending)
    return planned


async def _until_waiting(probe: asyncpg.Connection, failure: str) -> None:
    """Until some transaction waits for a lock (within 10 s, else ``failure``)."""
    for _ in range(1000):
        if await probe.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(failure)


# The platform's wallet row, if nobody holds its lock (run inside a transaction: the probe's lock lasts until its end).
_WALLET_FREE = "SELECT id FROM wallets WHERE platform_id = $1 FOR NO KEY UPDATE SKIP LOCKED"


async def _applied(conn: asyncpg.Connection, planned: Planned) -> list[Result]:
    await conn.fetchval(APPLY, orjson.dumps(planned.payload).decode())
    return planned.results


def test_two_writers_updating_overlapping_budgets_in_opposite_orders_never_deadlock(pg_settings: Settings) -> None:
    """One writer sends every batch's budgets in ascending id order, the other in descending order, over 24 shared
    budgets, batch after batch at once: no deadlock, no conflict, exact amounts. (The budgets are locked before the
    wallet row, so only their id order keeps the two apart; the next test checks that order itself.)"""
    rounds, width = 25, 32
    platform_id, users = asyncio.run(funded_tenant(pg_settings, 40, WALLET, BUDGET, "set-based"))
    shares = {"up": users[:width], "down": users[-width:]}

    async def writer(descending: bool, ready: asyncio.Barrier) -> int:
        """Every batch is decided before the first is written (with room to spare, a batch decided from older rows
        still passes its guards), then written back to back, so that the two writers' budget updates overlap."""
        conn = await asyncpg.connect(_dsn(pg_settings))
        mine = shares["down" if descending else "up"]
        try:
            requests = [[hold_request(platform_id, user) for user in mine] for _ in range(rounds)]
            placing = [await _decided(conn, list(batch), descending) for batch in requests]
            await ready.wait()
            grants = [await _applied(conn, planned) for planned in placing]
            settling = [
                await _decided(conn, [settlement(g, r) for g, r in zip(batch, asked, strict=True)], descending)
                for batch, asked in zip(grants, requests, strict=True)
            ]
            await ready.wait()
            for planned in settling:
                assert await _applied(conn, planned) == [True] * width
            return rounds
        finally:
            await conn.close()

    async def both() -> list[int]:
        ready = asyncio.Barrier(2)
        return await asyncio.gather(writer(False, ready), writer(True, ready))

    assert asyncio.run(both()) == [rounds, rounds]  # no deadlock (SQLSTATE 40P01) and no conflict raised

    after = asyncio.run(_state(pg_settings))
    budget_of = {b.end_user_id: b.id for b in asyncio.run(_budget_rows(pg_settings))}
    shared = set(shares["up"]) & set(shares["down"])
    assert len(shared) == 24
    for user in users:
        settled = rounds * (2 if user in shared else 1)
        assert after["budgets"][budget_of[user]] == (settled * COST, 0), user
    assert after["wallets"] == [(WALLET - 2 * rounds * width * COST, 0)]
    assert after["holds"] == ["captured"] * (2 * rounds * width) and after["logs"] == 2 * rounds * width
    usage = sorted((r for r in after["wallet_rows"] if r.type == "usage"), key=lambda r: -r.balance_after_nanos)
    assert [r.balance_after_nanos for r in usage] == [WALLET - (i + 1) * COST for i in range(2 * rounds * width)]
    for user in shared:
        rows = after["budget_rows"]
        inference = sorted(r.used_after_nanos for r in rows if r.budget_id == budget_of[user] and r.type == "inference")
        assert inference == [(i + 1) * COST for i in range(2 * rounds)]
    assert_invariants(pg_settings)


def test_the_function_locks_a_batchs_budgets_in_id_order_whatever_order_they_are_sent_in(
    pg_settings: Settings,
) -> None:
    """A set-based UPDATE locks rows in the order its join visits them (here: as sent), and two transactions locking
    the same budgets in different orders deadlock. With the middle one of nine budgets locked by someone else, the
    function, sent the budgets in descending order, waits there holding exactly the four below it, and not the
    platform's wallet row, which it locks last."""
    platform_id, users = asyncio.run(funded_tenant(pg_settings, 9, WALLET, BUDGET, "set-based"))

    async def scenario() -> tuple[list[str], set[str], int, list[Result]]:
        writer, blocker, probe = [await asyncpg.connect(_dsn(pg_settings)) for _ in range(3)]
        try:
            planned = await _decided(writer, [hold_request(platform_id, user) for user in users], descending=True)
            ids = sorted(b["id"] for b in planned.payload["budgets"])
            assert [b["id"] for b in planned.payload["budgets"]] == ids[::-1]
            blocking = blocker.transaction()
            await blocking.start()
            await blocker.execute("SELECT 1 FROM budgets WHERE id = $1 FOR NO KEY UPDATE", ids[4])
            applying = asyncio.create_task(_applied(writer, planned))
            await _until_waiting(probe, "the function never waited for the blocked budget")
            probing = probe.transaction()
            await probing.start()
            free = await probe.fetch(
                "SELECT id FROM budgets WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE SKIP LOCKED", ids
            )
            wallet_free = len(await probe.fetch(_WALLET_FREE, platform_id))
            await probing.rollback()
            await blocking.rollback()
            return ids, set(ids) - {r["id"] for r in free} - {ids[4]}, wallet_free, await applying
        finally:
            for conn in (writer, blocker, probe):
                await conn.close()

    ids, locked, wallet_free, grants = asyncio.run(scenario())

    assert locked == set(ids[:4])
    assert wallet_free == 1
    assert all(isinstance(g, HoldGrant) for g in grants)
    after = asyncio.run(_state(pg_settings))
    assert set(after["budgets"].values()) == {(0, HOLD)} and after["wallets"] == [(WALLET, 9 * HOLD)]
    assert_invariants(pg_settings)


async def _budget_rows(settings: Settings) -> list[Any]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.select(budgets))).all())
    finally:
        await engine.dispose()


def _body(create: str) -> str:
    return create.split("$fn$")[1]


async def _function(settings: Settings) -> tuple[str, list[str] | None]:
    """The function's body and its settings (``SET …`` clauses) as the database has them."""
    conn = await asyncpg.connect(_dsn(settings))
    try:
        row = await conn.fetchrow("SELECT prosrc, proconfig FROM pg_proc WHERE proname = 'tollway_money_apply'")
        assert row is not None
        return str(row["prosrc"]), row["proconfig"]
    finally:
        await conn.close()


def test_the_money_function_migrations_go_down_and_back(pg_settings: Settings) -> None:
    platform_id, users = asyncio.run(funded_tenant(pg_settings, 3, WALLET, BUDGET, "set-based"))  # migrated to head
    config = alembic_config(pg_settings)

    async def calls() -> dict[str, Any]:
        engine = create_engine(pg_settings)
        money = PostgresMoney(pg_settings.database_url, engine)
        try:
            settlements = await _holds(money, platform_id, users)
            assert await money.apply(settlements, utcnow(), SQL) == [True] * len(users)
            assert money.conflicts == 0 and money.locked == 0
        finally:
            await money.close()
            await engine.dispose()
        return await _state(pg_settings)

    settings = ["enable_seqscan=off", "plan_cache_mode=force_generic_plan"]
    head, wallet_last = (_body(HOLDS_NO_KEY), settings), (_body(WALLET_LAST), settings)
    set_based = (_body(SET_BASED), settings)
    assert asyncio.run(_function(pg_settings)) == head
    command.downgrade(config, "0019")
    assert asyncio.run(_function(pg_settings)) == wallet_last
    assert asyncio.run(calls())["budgets"] != {}  # the writer works with 0019's function
    command.downgrade(config, "0018")
    assert asyncio.run(_function(pg_settings)) == set_based
    assert asyncio.run(calls())["budgets"] != {}  # the writer works with 0017's function
    command.downgrade(config, "0016")
    assert asyncio.run(_function(pg_settings)) == (_body(APPLY_0016), None)
    assert asyncio.run(calls())["budgets"] != {}  # and with 0016's
    command.upgrade(config, "head")
    assert asyncio.run(_function(pg_settings)) == head
    after = asyncio.run(calls())

    assert set(after["budgets"].values()) == {(4 * COST, 0)}
    assert after["wallets"] == [(WALLET - 4 * len(users) * COST, 0)]
    assert_invariants(pg_settings)


def test_the_locked_path_locks_the_budgets_before_the_wallet(pg_settings: Settings) -> None:
    """The fallback that reads its rows locked before deciding (``Batch.load``) takes the function's order: with one
    of the batch's budgets locked by someone else, it waits there without holding the platform's wallet row, so it
    can never deadlock against a function call that holds the budgets and waits for the wallet."""
    platform_id, users = asyncio.run(funded_tenant(pg_settings, 3, WALLET, BUDGET, "set-based"))

    async def scenario() -> tuple[int, list[Result], PostgresMoney]:
        engine = create_engine(pg_settings)
        money = PostgresMoney(pg_settings.database_url, engine)
        blocker, probe = [await asyncpg.connect(_dsn(pg_settings)) for _ in range(2)]
        try:
            settlements = await _holds(money, platform_id, users)
            blocking = blocker.transaction()
            await blocking.start()
            await blocker.execute("SELECT 1 FROM budgets WHERE end_user_id = $1 FOR NO KEY UPDATE", users[1])
            locked = asyncio.create_task(money._locked(settlements, utcnow(), SQL))
            await _until_waiting(probe, "the locked path never waited for the blocked budget")
            probing = probe.transaction()
            await probing.start()
            wallet_free = len(await probe.fetch(_WALLET_FREE, platform_id))
            await probing.rollback()
            await blocking.rollback()
            return wallet_free, await locked, money
        finally:
            for conn in (blocker, probe):
                await conn.close()
            await money.close()
            await engine.dispose()

    wallet_free, results, money = asyncio.run(scenario())

    assert wallet_free == 1
    assert results == [True] * 3 and money.locked == 1
    after = asyncio.run(_state(pg_settings))
    assert set(after["budgets"].values()) == {(COST, 0)}
    assert after["wallets"] == [(WALLET - 3 * COST, 0)]
    assert_invariants(pg_settings)


def test_the_holds_a_batch_resolves_are_locked_for_no_key_update(pg_settings: Settings) -> None:
    """While the function's transaction is open, its holds are locked against every other writer (``FOR NO KEY
    UPDATE``, which an ``UPDATE`` takes) but not against ``FOR KEY SHARE``, the lock a foreign key's check takes;
    0016, 0017 and 0019 locked them ``FOR UPDATE``, which blocked that too (migration 0020). No table references
    ``holds``."""
    platform_id, users = asyncio.run(funded_tenant(pg_settings, 2, WALLET, BUDGET, "set-based"))

    async def scenario() -> None:
        engine = create_engine(pg_settings)
        money = PostgresMoney(pg_settings.database_url, engine)
        writer, other = await asyncpg.connect(_dsn(pg_settings)), await asyncpg.connect(_dsn(pg_settings))
        try:
            referencing = "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND confrelid = 'holds'::regclass"
            assert await other.fetchval(referencing) == 0
            settlements = await _holds(money, platform_id, users)
            planned = await _decided(writer, settlements, descending=False)
            hold_ids = sorted(planned.payload["locked"])
            assert len(hold_ids) == 2
            await other.execute("SET lock_timeout = '200ms'")
            async with writer.transaction():
                await _applied(writer, planned)
                shared = await other.fetch("SELECT id FROM holds WHERE id = ANY($1) FOR KEY SHARE", hold_ids)
                assert sorted(r["id"] for r in shared) == hold_ids
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await other.execute("UPDATE holds SET checkpoint = NULL WHERE id = $1", hold_ids[0])
            assert (await _state(pg_settings))["holds"] == ["captured", "captured"]
        finally:
            await writer.close()
            await other.close()
            await money.close()
            await engine.dispose()

    asyncio.run(scenario())


def test_a_wallet_written_between_the_functions_read_and_its_lock_gets_its_ledger_rows_after_that_write(
    pg_settings: Settings,
) -> None:
    """The function writes a batch's wallet ledger rows before it locks the wallet, their "after" amounts from the
    wallet as read without a lock. Another instance's top-up that commits in between moves the wallet by more than
    those rows assumed: the function undoes that part and does it again with the wallet locked first, so the rows
    still chain through the top-up, with no conflict for the writer to retry."""
    platform_id, users = asyncio.run(funded_tenant(pg_settings, 3, WALLET, BUDGET, "set-based"))
    topup = 5 * 10**9

    async def scenario() -> tuple[list[Result], PostgresMoney]:
        engine = create_engine(pg_settings)
        money = PostgresMoney(pg_settings.database_url, engine)
        blocker, probe = [await asyncpg.connect(_dsn(pg_settings)) for _ in range(2)]
        try:
            settlements = await _holds(money, platform_id, users)
            blocking = blocker.transaction()
            await blocking.start()
            wallet_id = await blocker.fetchval(
                "UPDATE wallets SET balance_nanos = balance_nanos + $2 WHERE platform_id = $1 RETURNING id",
                platform_id,
                topup,
            )
            await blocker.execute(
                "INSERT INTO wallet_transactions (id, wallet_id, platform_id, type, amount_nanos, balance_after_nanos,"
                " description, metadata, request_id, created_at)"
                " VALUES ($1, $2, $3, 'topup', $4, $5, 'between', '{}'::json, NULL, now())",
                str(uuid.uuid4()),
                wallet_id,
                platform_id,
                topup,
                WALLET + topup,
            )
            settling = asyncio.create_task(money.apply(settlements, utcnow(), SQL))
            await _until_waiting(probe, "the function never waited for the wallet")
            await blocking.commit()
            return await settling, money
        finally:
            for conn in (blocker, probe):
                await conn.close()
            await money.close()
            await engine.dispose()

    results, money = asyncio.run(scenario())

    assert results == [True] * 3
    assert money.conflicts == 0 and money.locked == 0
    after = asyncio.run(_state(pg_settings))
    assert after["wallets"] == [(WALLET + topup - 3 * COST, 0)]
    usage = sorted((r for r in after["wallet_rows"] if r.type == "usage"), key=lambda r: -r.balance_after_nanos)
    assert [r.balance_after_nanos for r in usage] == [WALLET + topup - (i + 1) * COST for i in range(3)]
    assert_invariants(pg_settings)
