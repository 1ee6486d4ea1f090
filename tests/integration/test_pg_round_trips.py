"""What PostgreSQL sees of the hot path (issue 18), counted in the server's own statement log (``log_statement =
all`` on the test's database): a read is one statement, not a pre-ping and a transaction around it; a pooled
connection the server closed (a restart) is replaced without an error; and the locked money batch sends one
statement shape per query however many end users and holds a batch has, locking with ``FOR NO KEY UPDATE``."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from tests.conftest import make_settings
from tests.integration.test_pg_money_path import _tenant
from tests.support.servers import PostgresServer
from tollway.domain.clock import utcnow
from tollway.domain.holds import CandidateTerms, HoldGrant, HoldRequest, MoneyCommand, Release
from tollway.domain.platform_settings import RateLimits
from tollway.domain.pricing import Prices
from tollway.settings import Settings
from tollway.storage.money.batch import Result, apply_batch
from tollway.storage.money.driver_sql import DriverSQL
from tollway.storage.money.postgres import SNAPSHOT, PostgresMoney
from tollway.storage.sql.budgets import BudgetStore
from tollway.storage.sql.catalog import CatalogStore
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.keystore import KeyStore
from tollway.storage.sql.outbox import DriverOutbox
from tollway.storage.sql.rate_overrides import RateOverrideStore
from tollway.storage.sql.tables import api_keys

pytestmark = pytest.mark.postgres

# One logged statement: "LOG:  statement: BEGIN;" (simple protocol) or "LOG:  execute <name>: SELECT …" (extended).
_LOGGED = re.compile(r" LOG:  (?:statement|execute ([^:]+)): (.*?)(?=\n\S|\Z)", re.S)


class StatementLog:
    """The statements the server logged for one database, from a point on."""

    def __init__(self, server: PostgresServer, database_url: str) -> None:
        self.path = server.dir / "log"
        name = database_url.rsplit("/", 1)[1]
        psql = ["psql", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-c"]
        subprocess.run([*psql, f"ALTER DATABASE {name} SET log_statement = 'all'"], check=True, capture_output=True)
        self.start = 0

    def mark(self) -> None:
        self.start = self.path.stat().st_size

    def since(self) -> list[tuple[str | None, str]]:
        """(prepared statement name or None, text) of each statement logged since ``mark``."""
        time.sleep(0.1)  # the server writes its log line as it runs the statement; let it land
        text = self.path.read_bytes()[self.start :].decode()
        return [(name, " ".join(sql.split())) for name, sql in _LOGGED.findall(text)]


@pytest.fixture
def seeded(private_postgres: PostgresServer, tmp_path: Path) -> tuple[Settings, str, list[str], StatementLog]:
    settings = make_settings(tmp_path, private_postgres.new_database())
    platform_id, users = asyncio.run(_tenant(settings, 10**12, [10**10] * 12))
    return settings, platform_id, users, StatementLog(private_postgres, settings.database_url)


def test_hot_path_reads_are_one_statement_each(
    seeded: tuple[Settings, str, list[str], StatementLog],
) -> None:
    settings, platform_id, users, log = seeded

    async def run() -> list[list[tuple[str | None, str]]]:
        engine = create_engine(settings)
        keys, catalog = KeyStore(engine), CatalogStore(engine)
        limits, budgets = RateOverrideStore(engine), BudgetStore(engine)
        reads: list[Callable[[], Awaitable[Any]]] = [
            lambda: keys.find_active(b"k" * 32),
            lambda: catalog.platform_settings(platform_id),
            lambda: catalog.usable_rows(platform_id),
            lambda: limits.limits_of(platform_id, users[0]),
            lambda: budgets.find(platform_id, users[0]),
        ]
        try:
            for read in reads:  # the pool's connection and its prepared statements exist after a first round
                await read()
            seen = []
            for read in reads:
                log.mark()
                await read()
                seen.append(log.since())
            return seen
        finally:
            await engine.dispose()

    for statements in asyncio.run(run()):
        # Before: BEGIN, the pre-ping (an empty statement, not logged), ROLLBACK, BEGIN, the SELECT, ROLLBACK.
        assert len(statements) == 1, statements
        assert statements[0][1].startswith("SELECT"), statements


def test_a_pooled_connection_the_server_closed_is_replaced(
    seeded: tuple[Settings, str, list[str], StatementLog], private_postgres: PostgresServer
) -> None:
    settings, platform_id, _users, _log = seeded

    async def run() -> None:
        engine = create_engine(settings)
        catalog = CatalogStore(engine)
        try:
            assert await catalog.platform_settings(platform_id) is not None
            private_postgres.halt()  # fast shutdown: the server terminates the pooled connection
            private_postgres.resume()
            await asyncio.sleep(0.2)
            # No pre-ping any more: the pool sees the closed connection at checkout and connects afresh.
            assert await catalog.platform_settings(platform_id) is not None
            async with engine.begin() as conn:  # and a transaction too
                assert (await conn.exec_driver_sql("SELECT 1")).scalar_one() == 1
        finally:
            await engine.dispose()

    asyncio.run(run())


def _hold(platform_id: str, user: str) -> HoldRequest:
    terms = (CandidateTerms("m", Prices(1_000 * 1_000_000, 0), output_limit=1, min_output=1, prompt_tokens=1),)
    return HoldRequest("req_" + uuid.uuid4().hex, platform_id, user, terms, 1, 0, utcnow() + timedelta(minutes=5))


def test_a_locked_batch_sends_one_statement_shape_per_query(
    seeded: tuple[Settings, str, list[str], StatementLog],
) -> None:
    """Batches over 1, 3, 7 and 12 end users (holds placed, then released): each SELECT of the locked path has one
    text and one prepared statement, and the rows and amounts are the same as ever."""
    settings, platform_id, users, log = seeded
    sql = DriverSQL("postgresql")

    async def batch(commands: list[MoneyCommand]) -> list[Result]:
        async with engine.begin() as conn:
            return await conn.run_sync(apply_batch, commands, utcnow(), sql)

    async def run() -> None:
        try:
            for size in (1, 3, 7, 12):
                grants = await batch([_hold(platform_id, user) for user in users[:size]])
                assert all(isinstance(g, HoldGrant) and g.wallet_nanos == g.budget_nanos == 1_000 for g in grants)
                assert len({g.budget_id for g in grants if isinstance(g, HoldGrant)}) == size  # one budget each
                released = await batch([Release(g.hold_id) for g in grants if isinstance(g, HoldGrant)])
                assert released == [True] * size
        finally:
            await engine.dispose()

    engine = create_engine(settings)
    log.mark()
    asyncio.run(run())
    selects = [(name, text) for name, text in log.since() if text.startswith("SELECT")]
    shapes = Counter(text for _name, text in selects)
    names = {text: {name for name, t in selects if t == text} for text in shapes}
    by_table = Counter(re.search(r" FROM (\w+)", text).group(1) for text in shapes)  # type: ignore[union-attr]
    # Before: a new text (and a new prepared statement) for each number of end users or holds in a batch.
    assert by_table == {"budgets": 1, "wallets": 1, "holds": 1}, shapes
    assert shapes[next(t for t in shapes if " FROM budgets" in t)] == 8  # every batch read its budgets
    assert all(len(n) == 1 for n in names.values()), names  # prepared once, on the one connection
    for text in shapes:
        assert text.endswith(("FOR NO KEY UPDATE", "FOR NO KEY UPDATE OF wallets")), text


def test_gathered_refresh_reads_send_one_statement_shape_for_any_number_of_items(
    seeded: tuple[Settings, str, list[str], StatementLog],
) -> None:
    """The gathered refreshes of keys and of rate limits, and the money batch's webhook-endpoint lookup, over 1, 2,
    3 and 7 items: each query has one text and one prepared statement on the connection."""
    settings, platform_id, users, log = seeded
    sql = DriverSQL("postgresql")

    async def run() -> None:
        engine = create_engine(settings)
        keys, limits = KeyStore(engine), RateOverrideStore(engine)
        async with engine.connect() as conn:
            digests = [bytes(d) for d in (await conn.execute(sa.select(api_keys.c.key_hash))).scalars()]
        log.mark()
        try:
            for size in (1, 2, 3, 7):
                assert len(await keys.find_active_many(digests[:size])) == size
                found = await limits.limits_of_many([(platform_id, user) for user in users[:size]])
                assert found == {user: (None, RateLimits()) for user in users[:size]}
                ids = [platform_id, *(f"no-such-platform-{i}" for i in range(1, size))]
                async with engine.begin() as conn:
                    outbox = await conn.run_sync(DriverOutbox, sql, ids)
                assert outbox.subs == {p: {} for p in ids}
        finally:
            await engine.dispose()

    asyncio.run(run())
    selects = [(name, text) for name, text in log.since() if text.startswith("SELECT") and " FROM " in text]
    shapes = Counter(text for _name, text in selects)
    names = {text: {name for name, t in selects if t == text} for text in shapes}
    # Before: an expanding IN, a new text (and a new prepared statement) for each number of keys or end users.
    by_table = Counter(re.search(r" FROM (\w+)", text).group(1) for text in shapes)  # type: ignore[union-attr]
    assert by_table == {"api_keys": 1, "platforms": 1, "rate_limit_overrides": 1, "webhook_endpoints": 1}, shapes
    assert set(shapes.values()) == {4}, shapes  # each query ran once per size
    assert all(len(n) == 1 for n in names.values()), names  # prepared once, on the one connection


def test_the_writers_snapshot_reads_by_index_whatever_the_tables_were_when_it_was_planned(
    seeded: tuple[Settings, str, list[str], StatementLog],
) -> None:
    """The writer prepares its snapshot read while the holds are few and runs it 16 times; then the holds grow by
    100,000, with no ANALYZE since: the snapshot was planned once, and that plan reads every table through an index.
    Before, depending on the values of its first five executions, the statement was either planned afresh at every
    execution (as in this scenario: 0.3 to 0.6 ms of planning per snapshot) or kept one generic plan made while the
    tables were small, with a sequential scan of the holds until the next ANALYZE of the table (measured: 0.6 ms a
    snapshot of 32 holds, 250 ms once 200,000 holds had been added)."""
    settings, platform_id, users, _log = seeded
    dsn = "postgresql://" + settings.database_url.split("://", 1)[1]

    async def run() -> str:
        admin = await asyncpg.connect(dsn)
        engine = create_engine(settings)
        money = PostgresMoney(settings.database_url, engine)
        sql = DriverSQL("postgresql")
        money.idle_s = 0.0  # no batch decided from kept rows: each one reads its snapshot
        try:
            await admin.execute("ALTER TABLE holds SET (autovacuum_enabled = off)")
            for _ in range(8):
                grants = await money.apply([_hold(platform_id, user) for user in users], utcnow(), sql)
                releases: list[MoneyCommand] = [Release(g.hold_id) for g in grants if isinstance(g, HoldGrant)]
                assert await money.apply(releases, utcnow(), sql) == [True] * len(users)
            assert money.locked == 0 and money.batches == 16
            await admin.execute(
                """INSERT INTO holds (id, request_id, platform_id, end_user_id, wallet_id, budget_id, wallet_nanos,
                    budget_nanos, terms, status, checkpoint, expires_at, created_at, resolved_at)
                SELECT 'grown' || i, 'req_grown' || i, platform_id, NULL, id, NULL, 1, 0, '{}', 'released', NULL,
                    now(), now(), now()
                FROM wallets, generate_series(1, 100000) i WHERE platform_id = $1""",
                platform_id,
            )
            conn = await money._connection()
            prepared = "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1"
            name, generic, custom = await conn.fetchrow(prepared, SNAPSHOT)
            assert (generic, custom) == (16, 0)  # planned once, when the holds were few
            ids = ", ".join(f"'{g.hold_id}'" for g in grants if isinstance(g, HoldGrant))
            plan = await conn.fetch(f"EXPLAIN EXECUTE {name}(ARRAY[{ids}], '{{}}', '{{}}')")
            return "\n".join(row[0] for row in plan)
        finally:
            await money.close()
            await engine.dispose()
            await admin.close()

    plan = asyncio.run(run())
    assert "Seq Scan" not in plan, plan
    assert "Index Cond: ((id)::text = ANY ($1))" in plan, plan  # the holds, by their primary key
