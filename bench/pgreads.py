"""One PostgreSQL + Redis instance, two builds side by side: CPU per request on the end-user path, one key and 50
keys rotated, wrk at concurrency 32 (issue 18: reads without a pre-ping and a transaction, the locked money batch
with one statement shape per query).

    .venv/bin/python bench/pgreads.py BEFORE_COMMIT [rounds]

The build at ``BEFORE_COMMIT`` (exported with ``git archive``) and this tree's run as two instances on two copies
of one seeded database (``CREATE DATABASE … TEMPLATE``), each pinned to core 0, measured in turn in interleaved
blocks (the other idle meanwhile), so the load other sessions put on this shared machine falls on both alike. CPU
per request is the instance's user + system CPU over a block divided by the requests wrk counted (as
``bench/scale.py``); requests per second are printed beside it, and what PostgreSQL spent on each instance's
database per request: transactions (``pg_stat_database``) and its backends' CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import TOLLWAY, Credentials, Instance, instances
from bench.crowd import CROWD_LIMITS, ROTATED_KEYS, Crowd, seed_crowd
from bench.run import ROOT, free_port, pinned, seed, wait_port
from bench.scale import _copy_database, measured_load, split_load
from tests.support.redis_server import RedisServer
from tests.support.servers import PostgresServer

USERS = 200
SECONDS = 8


@contextmanager
def build_at(commit: str) -> Iterator[Path]:
    """The ``src`` tree of ``commit``, for ``PYTHONPATH`` (it shadows this tree's editable install)."""
    work = Path(tempfile.mkdtemp(prefix="tollway-pgreads-"))
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive.stdout, check=True)
        yield work / "src"
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def instance(database: str, credentials: Credentials, redis_url: str, src: Path | None) -> Iterator[Instance]:
    """One instance pinned to core 0, of the build in ``src`` (None: this tree)."""
    with contextlib.ExitStack() as stack:
        saved = os.environ.get("PYTHONPATH")
        if src is not None:
            os.environ["PYTHONPATH"] = str(src)
        try:
            [node] = stack.enter_context(instances(database, 1, credentials, redis_url, pin=0))
        finally:  # the process has its environment; the next one gets its own
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
        yield node


def _psql(postgres: PostgresServer, query: str) -> list[list[str]]:
    argv = ["psql", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "-Atc", query]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


def _server_side(postgres: PostgresServer, database: str) -> dict[str, Any]:
    """The database's transactions so far (``pg_stat_database``), and the CPU ticks of each of its backends."""
    [[commits, rollbacks]] = _psql(
        postgres, f"SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = '{database}'"
    )
    ticks = {}
    for [pid] in _psql(postgres, f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'"):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks[pid] = int(fields[11]) + int(fields[12])
    return {"commits": int(commits), "rollbacks": int(rollbacks), "ticks": ticks}


def server_load(
    postgres: PostgresServer, database: str, node: Instance, keys: list[str], seconds: int
) -> dict[str, Any]:
    """``measured_load``, with what PostgreSQL spent on the instance's database per request: transactions (its
    statistics are flushed by each backend at most once a second, so ±1 s of them) and its backends' CPU."""
    before = _server_side(postgres, database)
    run = measured_load([node], keys, seconds)
    time.sleep(1.5)  # idle backends flush their statistics
    after = _server_side(postgres, database)
    requests = max(1.0, run["rps"] * seconds)
    ticks = sum(t - before["ticks"].get(pid, 0) for pid, t in after["ticks"].items())
    return {
        **run,
        "pg_commits_per_request": (after["commits"] - before["commits"]) / requests,
        "pg_rollbacks_per_request": (after["rollbacks"] - before["rollbacks"]) / requests,
        "pg_cpu_us_per_request": ticks / os.sysconf("SC_CLK_TCK") / requests * 1e6,
    }


def main() -> None:
    before_commit = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    upstream_port = free_port()
    upstream = subprocess.Popen(
        pinned(1, [TOLLWAY, "fake-upstream", "--port", str(upstream_port)]), stdout=subprocess.DEVNULL
    )
    redis, postgres = RedisServer(tuple(pinned(1, []))), PostgresServer()
    credentials = Credentials()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        wait_port(upstream_port)
        redis.start()
        postgres.start()
        template = postgres.new_database()
        with instance(template, credentials, redis.url, None) as node:
            upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
            asyncio.run(seed(node.base, credentials.admin_key, upstream_url, "fake/default", CROWD_LIMITS))
            crowd: Crowd = asyncio.run(seed_crowd(node.base, credentials.admin_key, USERS))
        with contextlib.ExitStack() as stack, build_at(before_commit) as before_src:
            nodes = {
                "before": stack.enter_context(
                    instance(_copy_database(postgres, template, "before"), credentials, redis.url, before_src)
                ),
                "after": stack.enter_context(
                    instance(_copy_database(postgres, template, "after"), credentials, redis.url, None)
                ),
            }
            for node in nodes.values():  # warm-up: caches, pools, prepared statements
                split_load([node], crowd.user_keys[:ROTATED_KEYS], 3)
            for round_ in range(rounds):
                for name, node in nodes.items() if round_ % 2 == 0 else reversed(nodes.items()):
                    for keys in ("one_key", "fifty_keys"):
                        chosen = crowd.user_keys[: 1 if keys == "one_key" else ROTATED_KEYS]
                        run = server_load(postgres, name, node, chosen, SECONDS)
                        results.setdefault(name, {}).setdefault(keys, []).append(run)
                        print(
                            f"round {round_ + 1} {name:6} {keys:10} {run['rps']:7.0f} req/s"
                            f" {run['cpu_us_per_request']:6.0f} µs CPU/request; PostgreSQL"
                            f" {run['pg_cpu_us_per_request']:4.0f} µs CPU, {run['pg_commits_per_request']:.2f} commits,"
                            f" {run['pg_rollbacks_per_request']:.2f} rollbacks per request; load {os.getloadavg()[0]:.1f}",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        upstream.terminate()
        upstream.wait(timeout=20)
        redis.stop()
        postgres.stop()
    summary = {
        name: {
            keys: {
                "cpu_us_per_request": [round(r["cpu_us_per_request"]) for r in runs],
                "rps": [round(r["rps"]) for r in runs],
                "median_cpu_us": round(statistics.median(r["cpu_us_per_request"] for r in runs)),
                "median_rps": round(statistics.median(r["rps"] for r in runs)),
                "pg_cpu_us_per_request": [round(r["pg_cpu_us_per_request"]) for r in runs],
                "pg_transactions_per_request": [
                    round(r["pg_commits_per_request"] + r["pg_rollbacks_per_request"], 2) for r in runs
                ],
                "pg_rollbacks_per_request": [round(r["pg_rollbacks_per_request"], 2) for r in runs],
            }
            for keys, runs in by_keys.items()
        }
        for name, by_keys in results.items()
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
