"""The server time of ``tollway_money_apply`` per money batch, over one end user and over many (issue 18).

A throwaway PostgreSQL (``tests/support/servers.py``), migrated, with one platform whose end users each have a
budget (seeded by ``tests/support/money_seed.py``, as the set-based money tests are). The production writer's
PostgreSQL path (``storage/money/postgres.PostgresMoney``) is driven directly with batches of ``--calls`` holds, then
a batch of their settlements, the holds spread over ``1`` end user (one budget row per batch) or over ``--users``
(one budget row per hold). Every variant of the function (``0016``: a PL/pgSQL loop of one ``UPDATE`` per row;
``0017``: one set-based ``UPDATE`` per table; ``0020``: the budgets before the wallets, the wallets' ledger rows
before their lock, the holds locked ``FOR NO KEY UPDATE``) is installed in a schema of its own and
has a writer of its own whose ``search_path`` finds it first, with end users of its own, on one freshly seeded
database per run and number of end users: the writers take turns batch by batch (the order alternating every round),
so the tables grow alike for every variant and this shared machine's load falls on all of them alike.

Per batch: the client side is the writer's ``apply`` (decide from the kept rows, one round trip, absorb the result);
the server side is the function's own time (``pg_stat_user_functions.total_time`` with ``track_functions = 'pl'``),
read after every batch (the writer's session is told to flush its statistics with ``pg_stat_force_next_flush``).

    .venv/bin/python bench/pgapply.py [--runs 3] [--rounds 40] [--calls 32] [--users 50]   # docs: --rounds 100
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.money_seed import funded_tenant, hold_request, settlement
from tests.support.servers import PostgresServer

from tollway.domain.clock import utcnow
from tollway.domain.holds import HoldGrant, MoneyCommand
from tollway.settings import Settings
from tollway.storage.money.driver_sql import DriverSQL
from tollway.storage.money.postgres import PostgresMoney
from tollway.storage.sql.db import create_engine

WALLET = 10**16  # a wallet that never runs out
BUDGET = 10**15
_VERSIONS = "tollway.storage.sql.migrations.versions."
STATS = """SELECT calls, total_time FROM pg_stat_user_functions
WHERE funcname = 'tollway_money_apply' AND schemaname = $1"""
SQL = DriverSQL("postgresql")


def variants() -> dict[str, str]:
    """The function's text per migration that defines it (the ones that exist on this branch)."""
    found = {}
    for name, module in (
        ("0016", "0016_pg_money_functions"),
        ("0017", "0017_pg_money_set_based"),
        ("0020", "0020_pg_money_holds_no_key_lock"),
    ):
        try:
            found[name] = importlib.import_module(_VERSIONS + module).APPLY
        except ModuleNotFoundError:
            continue
    return found


class Writer:
    """One variant's writer: the production ``PostgresMoney`` on a connection whose ``search_path`` finds that
    variant's function first (each variant is installed in a schema of its own; the tables stay in ``public``)."""

    def __init__(self, settings: Settings, variant: str, users: list[str]) -> None:
        self.variant = variant
        self.users = users
        self.engine = create_engine(settings)
        self.money = PostgresMoney(f"{settings.database_url}?search_path=v{variant},public", self.engine)
        self.money.idle_s = 3600.0  # decided from kept rows however slow the machine is between batches
        self.offset = 0
        self.out: dict[str, list[float]] = {"hold_ms": [], "settle_ms": [], "hold_us": [], "settle_us": []}

    async def round(self, platform_id: str, spread: int, calls: int, stats: asyncpg.Connection, keep: bool) -> None:
        """A batch of ``calls`` holds over ``spread`` of this writer's end users, then one of their settlements."""
        requests = [hold_request(platform_id, self.users[(self.offset + i) % spread]) for i in range(calls)]
        self.offset += calls
        grants = await self._timed(list(requests), "hold", stats, keep)
        assert all(isinstance(g, HoldGrant) for g in grants), grants
        settle: list[MoneyCommand] = [
            settlement(g, r) for g, r in zip(grants, requests, strict=True) if isinstance(g, HoldGrant)
        ]
        done = await self._timed(settle, "settle", stats, keep)
        assert all(d is True for d in done), done

    async def _timed(self, commands: list[MoneyCommand], kind: str, stats: asyncpg.Connection, keep: bool) -> Any:
        before = await stats.fetchrow(STATS, "v" + self.variant)
        started = time.perf_counter()
        results = await self.money.apply(commands, utcnow(), SQL)
        elapsed = time.perf_counter() - started
        conn = await self.money._connection()
        await conn.execute("SELECT pg_stat_force_next_flush()")
        after = await _flushed(stats, before, "v" + self.variant)
        if keep:
            self.out[kind + "_ms"].append(elapsed * 1000)
            self.out[kind + "_us"].append((after["total_time"] - (before["total_time"] if before else 0.0)) * 1000)
        return results

    async def close(self) -> None:
        assert self.money.locked == 0 and self.money.conflicts == 0, (self.money.locked, self.money.conflicts)
        await self.money.close()
        await self.engine.dispose()


async def _flushed(stats: asyncpg.Connection, before: Any, schema: str) -> Any:
    """The function's counters once the writer's session flushed the batch's call."""
    calls = before["calls"] if before else 0
    for _ in range(200):
        row = await stats.fetchrow(STATS, schema)
        if row is not None and row["calls"] > calls:
            return row
        await asyncio.sleep(0.005)
    raise RuntimeError("the writer's function statistics were not flushed")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def measured(
    server: PostgresServer, texts: dict[str, str], spread: int, args: argparse.Namespace, data: Path
) -> dict[str, dict[str, float]]:
    """Every variant over ``spread`` end users, side by side on one freshly seeded database (each with end users of
    its own), batch after batch in turn, the order alternating every round: the tables grow alike for all, and the
    machine's load falls on all alike."""
    url = server.new_database()
    name = url.rsplit("/", 1)[1]
    dsn = "postgresql://" + url.split("://", 1)[1]
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"ALTER DATABASE {name} SET track_functions = 'pl'")
    finally:
        await admin.close()
    settings = Settings(
        database_url=url, admin_key="sk-admin_" + secrets.token_urlsafe(32),
        secret_key=base64.b64encode(os.urandom(32)).decode(), data_dir=data / name, log_level="warning",
    )  # type: ignore[call-arg]  # fmt: skip
    platform_id, ids = await funded_tenant(settings, args.users * len(texts), WALLET, BUDGET, "pgapply")
    admin = await asyncpg.connect(dsn)
    try:
        for variant, text in texts.items():
            await admin.execute(f"CREATE SCHEMA v{variant}; SET search_path = v{variant}, public")
            await admin.execute(text)
    finally:
        await admin.close()
    writers = [Writer(settings, variant, ids[i * args.users : (i + 1) * args.users]) for i, variant in enumerate(texts)]
    stats = await asyncpg.connect(dsn)
    try:
        for round_ in range(args.rounds + 2):  # two rounds to warm up (the snapshot read, the statements prepared)
            for writer in writers if round_ % 2 == 0 else writers[::-1]:
                await writer.round(platform_id, spread, args.calls, stats, round_ >= 2)
    finally:
        await stats.close()
        for writer in writers:
            await writer.close()
    return {w.variant: {key: _median(values) for key, values in w.out.items()} for w in writers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=32)
    parser.add_argument("--users", type=int, default=50)
    args = parser.parse_args()
    texts = variants()
    server = PostgresServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="pgapply-") as tmp:
            print(f"{args.calls} calls a batch, {args.rounds} rounds, medians per batch; function: server µs")
            print("run variant users | hold: fn µs, client ms | settle: fn µs, client ms")
            for run in range(1, args.runs + 1):
                for spread in (1, args.users):
                    figures = asyncio.run(measured(server, texts, spread, args, Path(tmp)))
                    for variant, f in figures.items():
                        print(
                            f"{run} {variant} {spread:>3} | {f['hold_us']:7.0f} µs {f['hold_ms']:6.2f} ms"
                            f" | {f['settle_us']:7.0f} µs {f['settle_ms']:6.2f} ms",
                            flush=True,
                        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
