"""``make bench-scale``: the scale-out figures of issues 4 and 18, measured in one run.

1. Rate limits through Redis against in-process (issue 4): the end-user path with RPM/RPD/TPM limits set, added
   p50/p99 at concurrency 1, one instance on SQLite each; both run at once and are measured in interleaved blocks.
2. Many end users (issue 18): one platform with 1,000 end users (budget, rate limits, 15 % markup each), wrk at
   concurrency 32 rotating over 50 of their keys beside one of them, on embedded SQLite (one instance) and on
   PostgreSQL + Redis with 1, 2 and 4 instances, and the wallet row's lock hold time on PostgreSQL
   (bench/walletlock.py).

Instances are separate ``tollway serve`` processes on their own ports (bench/cluster.py); the load is split evenly
by one wrk per instance with 32 ÷ N connections each: a balancer costs nothing, so the figures measure the
instances, not a proxy competing for this machine's two cores. Results go to bench/results/scale.json and the scale
part of docs/performance.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import walletlock
from bench.cluster import TOLLWAY, Credentials, Instance, instances
from bench.crowd import CROWD_LIMITS, ROTATED_KEYS, Crowd, WrkResult, seed_crowd, wrk_rotating
from bench.run import BODY, ROOT, free_port, latency_block, pinned, seed, wait_port
from tests.support.redis_server import RedisServer, redis_binary
from tests.support.servers import PostgresServer, postgres_available

INSTANCE_COUNTS = (1, 2, 4)
CONNECTIONS = 32
SECONDS = 8
PROBE_SECONDS = 5


@contextmanager
def gateway(
    database_url: str, upstream_port: int, redis_url: str | None, credentials: Credentials
) -> Iterator[dict[str, str]]:
    """One seeded instance pinned to core 0; yields its chat URL and the end-user key of the bench's seed."""
    with instances(database_url, 1, credentials, redis_url, pin=0) as [instance]:
        base = instance.base
        upstream = f"http://127.0.0.1:{upstream_port}/v1"
        _key, user_key = asyncio.run(seed(base, credentials.admin_key, upstream, "fake/default", CROWD_LIMITS))
        yield {"url": base + "/v1/chat/completions", "user_key": user_key}


# -- 1. Redis against in-process limits ------------------------------------------------------------------------------


def limiter_latency(upstream_port: int, redis: RedisServer, blocks: int = 8, per_block: int = 300) -> dict[str, Any]:
    """Both gateways run at once (pinned to the same core, each idle while the other is measured) and are measured
    in interleaved blocks with the upstream itself, so drift on this shared machine hits every path alike."""
    stage("rate limits: Redis against in-process, concurrency 1")
    direct = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    with contextlib.ExitStack() as stack:
        gateways = {
            name: stack.enter_context(gateway("sqlite:///{work}/bench.db", upstream_port, redis_url, Credentials()))
            for name, redis_url in (("in_process", None), ("redis", redis.url))
        }
        runs: dict[str, Any] = asyncio.run(_interleaved(direct, gateways, blocks, per_block))
    runs["ratio_p50"] = runs["redis"]["end_user_added_p50_ms"] / runs["in_process"]["end_user_added_p50_ms"]
    return runs


async def _interleaved(
    direct: str, gateways: dict[str, dict[str, str]], blocks: int, per_block: int
) -> dict[str, dict[str, float]]:
    body_direct = json.dumps({**BODY, "model": "fake/default"}).encode()
    body = json.dumps(BODY).encode()
    samples: dict[str, list[float]] = {"direct": [], **{name: [] for name in gateways}}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        await latency_block(session, direct, "sk-x", body_direct, 200)  # warm-up every path
        for gw in gateways.values():
            await latency_block(session, gw["url"], gw["user_key"], body, 200)
        for _ in range(blocks):
            samples["direct"] += await latency_block(session, direct, "sk-x", body_direct, per_block)
            for name, gw in gateways.items():
                samples[name] += await latency_block(session, gw["url"], gw["user_key"], body, per_block)

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        name: {
            "end_user_p50_ms": pct(values, 0.50),
            "end_user_added_p50_ms": pct(values, 0.50) - pct(samples["direct"], 0.50),
            "end_user_added_p99_ms": pct(values, 0.99) - pct(samples["direct"], 0.99),
            "samples": len(values),
        }
        for name, values in samples.items()
        if name != "direct"
    }


# -- 2. Many end users, 1/2/4 instances ------------------------------------------------------------------------------


def split_load(nodes: list[Instance], keys: list[str], seconds: int) -> WrkResult:
    """``CONNECTIONS`` spread evenly over the instances, one wrk each on core 1: the requests per second add up;
    the tail is the worst instance's."""
    each = CONNECTIONS // len(nodes)
    with ThreadPoolExecutor(len(nodes)) as pool:
        runs = list(
            pool.map(
                lambda node: wrk_rotating(node.base + "/v1/chat/completions", keys, BODY, seconds, each, pinned(1, [])),
                nodes,
            )
        )
    return WrkResult(
        rps=sum(r.rps for r in runs),
        p50_ms=max(r.p50_ms for r in runs),
        p99_ms=max(r.p99_ms for r in runs),
        p999_ms=max(r.p999_ms for r in runs),
        socket_errors=sum(r.socket_errors for r in runs),
    )


def machine_busy_seconds() -> float:
    """CPU seconds spent by every process of the machine so far (``/proc/stat``: all but idle and I/O wait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def measured_load(nodes: list[Instance], keys: list[str], seconds: int) -> dict[str, Any]:
    """``split_load``, with the instances' CPU per answered request (a figure the other work on a shared machine
    moves far less than requests per second), and the whole machine's: the instances, PostgreSQL, Redis, the
    upstream, wrk and anything else running. The machine's CPU per request bounds what more instances could serve:
    two cores give at most ``2 s ÷ machine CPU per request`` requests a second, however the work is spread."""
    before, machine_before = sum(node.cpu_seconds() for node in nodes), machine_busy_seconds()
    result = split_load(nodes, keys, seconds)
    used = sum(node.cpu_seconds() for node in nodes) - before
    machine = machine_busy_seconds() - machine_before
    requests = max(1.0, result.rps * seconds)
    return {
        **asdict(result),
        "cpu_us_per_request": used / requests * 1e6,
        "machine_cpu_us_per_request": machine / requests * 1e6,
        "machine_busy_cores": machine / seconds,
    }


def crowd_throughput(nodes: list[Instance], crowd: Crowd) -> dict[str, Any]:
    """A warm-up over the 50 keys (every instance's caches and pools), then one end user's key, then 50 of them."""
    split_load(nodes, crowd.user_keys[:ROTATED_KEYS], 3)
    one = measured_load(nodes, crowd.user_keys[:1], SECONDS)
    fifty = measured_load(nodes, crowd.user_keys[:ROTATED_KEYS], SECONDS)
    return {"one_key": one, "fifty_keys": fifty, "keys_ratio": fifty["rps"] / one["rps"]}


def seeded(nodes: list[Instance], upstream_port: int, credentials: Credentials) -> Crowd:
    upstream = f"http://127.0.0.1:{upstream_port}/v1"
    asyncio.run(seed(nodes[0].base, credentials.admin_key, upstream, "fake/default", CROWD_LIMITS))
    return asyncio.run(seed_crowd(nodes[0].base, credentials.admin_key))


def sqlite_crowd(upstream_port: int) -> dict[str, Any]:
    """Seeded, then measured by a fresh instance on the same file, as on PostgreSQL: the seeding's write-ahead log is
    checkpointed away when the seeding instance stops, and no configuration starts with warm caches."""
    credentials = Credentials()
    work = Path(tempfile.mkdtemp(prefix="tollway-scale-sqlite-"))
    database = f"sqlite:///{work / 'bench.db'}"
    try:
        stage("embedded SQLite: seeding 1,000 end users")
        with instances(database, 1, credentials, pin=0) as nodes:
            crowd = seeded(nodes, upstream_port, credentials)
        stage("embedded SQLite, 1 instance")
        with instances(database, 1, credentials, pin=0) as nodes:
            return crowd_throughput(nodes, crowd)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def postgres_crowd(upstream_port: int, redis: RedisServer, postgres: PostgresServer) -> dict[str, Any]:
    """Seeded once; each instance count runs on a fresh copy of the seeded database (``CREATE DATABASE … TEMPLATE``),
    so every configuration starts from the same rows."""
    credentials = Credentials()
    template = postgres.new_database()
    stage("PostgreSQL: seeding 1,000 end users")
    with instances(template, 1, credentials, redis.url) as nodes:
        crowd = seeded(nodes, upstream_port, credentials)
    runs: dict[str, Any] = {}
    for count in INSTANCE_COUNTS:
        stage(f"PostgreSQL + Redis, {count} instance(s)")
        database = _copy_database(postgres, template, f"scale_{count}")
        with instances(database, count, credentials, redis.url, pin=0, spread=count > 1) as nodes:
            runs[f"instances_{count}"] = crowd_throughput(nodes, crowd)
            asyncio.run(walletlock.install(database))
            split_load(nodes, crowd.user_keys[:ROTATED_KEYS], PROBE_SECONDS)
            runs[f"instances_{count}"]["wallet_lock"] = asyncio.run(walletlock.collect(database))
    return runs


def stage(what: str) -> None:
    print(f"bench-scale {datetime.now(UTC):%H:%M:%S}: {what}", file=sys.stderr, flush=True)


def _copy_database(postgres: PostgresServer, template: str, name: str) -> str:
    psql = shutil.which("psql")
    assert psql, "psql not found"
    source = template.rsplit("/", 1)[1]
    statement = f"CREATE DATABASE {name} TEMPLATE {source}"
    subprocess.run(
        [psql, "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "-c", statement],
        check=True,
        capture_output=True,
    )
    return template.rsplit("/", 1)[0] + "/" + name


def ratios(sqlite: dict[str, Any], pg: dict[str, Any] | None) -> dict[str, Any]:
    """The ratios of issue 18's targets, each with one key and with 50; the worse one counts."""

    def both(numerator: dict[str, Any], denominator: dict[str, Any]) -> dict[str, float]:
        one = numerator["one_key"]["rps"] / denominator["one_key"]["rps"]
        fifty = numerator["fifty_keys"]["rps"] / denominator["fifty_keys"]["rps"]
        return {"one_key": one, "fifty_keys": fifty, "worse": min(one, fifty)}

    configurations = [sqlite, *(pg or {}).values()]
    found: dict[str, Any] = {"keys_worst": min(run["keys_ratio"] for run in configurations)}
    if pg:
        found["two_vs_one"] = both(pg["instances_2"], pg["instances_1"])
        found["machine_ceiling"] = ceiling(pg["instances_1"])
        found["four_vs_one"] = both(pg["instances_4"], pg["instances_1"])
        found["postgres_vs_sqlite"] = both(pg["instances_1"], sqlite)
    return found


def ceiling(run: dict[str, Any]) -> dict[str, float]:
    """The most any number of instances could serve on this machine over what one served: all its cores busy at the
    machine CPU per request the one instance's run cost (more instances only add to that cost, as they preempt each
    other)."""
    cores = os.cpu_count() or 1

    def most(load: dict[str, Any]) -> float:
        return cores * 1e6 / load["machine_cpu_us_per_request"] / load["rps"]

    one, fifty = most(run["one_key"]), most(run["fifty_keys"])
    return {"one_key": one, "fifty_keys": fifty, "worse": min(one, fifty)}


# -- report ----------------------------------------------------------------------------------------------------------


def _cell(run: dict[str, Any]) -> str:
    errors = f", {run['socket_errors']} without answer" if run["socket_errors"] else ""
    machine = (
        f"; machine {run['machine_cpu_us_per_request']:.0f} µs, {run['machine_busy_cores']:.2f} cores busy"
        if "machine_cpu_us_per_request" in run
        else ""
    )
    return (
        f"{run['rps']:.0f} req/s, {run['cpu_us_per_request']:.0f} µs CPU{machine} (p99 {run['p99_ms']:.0f} ms{errors})"
    )


def crowd_rows(results: dict[str, Any]) -> str:
    rows = [f"| embedded SQLite, 1 instance | {_crowd_cells(results['sqlite'])} | |"]
    for count in INSTANCE_COUNTS:
        run = (results.get("postgres") or {}).get(f"instances_{count}")
        if run is None:
            rows.append(f"| PostgreSQL + Redis, {count} instance(s) | not measured: {results['skipped']} | | | |")
            continue
        lock = run["wallet_lock"]
        lock_cell = (
            f"{lock['p50_ms']:.2f} / {lock['p99_ms']:.2f} ms (bound {lock['bound_p50_ms']:.2f} / "
            f"{lock['bound_p99_ms']:.2f} ms; transactions {lock['transaction_p50_ms']:.1f} / "
            f"{lock['transaction_p99_ms']:.1f} ms; {lock['by_function']:.0f} of {lock['transactions']:.0f} by the "
            "function)"
        )
        rows.append(
            f"| PostgreSQL + Redis, {count} instance{'s' if count > 1 else ''} | {_crowd_cells(run)} | {lock_cell} |"
        )
    return "\n".join(rows)


def _crowd_cells(run: dict[str, Any]) -> str:
    return f"{_cell(run['one_key'])} | {_cell(run['fifty_keys'])} | **{run['keys_ratio']:.2f}×**"


def ratio_rows(found: dict[str, Any]) -> str:
    rows = [f"| 50 keys ÷ one key, worst configuration | | | **{found['keys_worst']:.2f}×** | ≥ 0.9× |"]
    for name, label, target in (
        ("two_vs_one", "2 instances ÷ 1 (PostgreSQL + Redis)", "≥ 1.3×"),
        ("four_vs_one", "4 instances ÷ 1 (PostgreSQL + Redis)", ""),
        ("machine_ceiling", "the most this machine's cores allow over 1 instance (machine CPU per request)", ""),
        ("postgres_vs_sqlite", "1 instance on PostgreSQL + Redis ÷ embedded SQLite", "≥ 0.8×"),
    ):
        if name in found:
            r = found[name]
            rows.append(
                f"| {label} | {r['one_key']:.2f}× | {r['fifty_keys']:.2f}× | **{r['worse']:.2f}×** | {target} |"
            )
    return "\n".join(rows)


def write_report(results: dict[str, Any]) -> None:
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    lim = results["limiter"]
    limiter = (
        "Redis not installed: not measured"
        if lim is None
        else f"""| Measure | In-process limits | Redis limits | Ratio | Target |
|---|---|---|---|---|
| added p50, concurrency 1 (SQLite, 1 instance) | +{lim["in_process"]["end_user_added_p50_ms"]:.3f} ms | +{lim["redis"]["end_user_added_p50_ms"]:.3f} ms | **{lim["ratio_p50"]:.2f}×** | ≤ 1.3× |
| added p99, concurrency 1 | +{lim["in_process"]["end_user_added_p99_ms"]:.3f} ms | +{lim["redis"]["end_user_added_p99_ms"]:.3f} ms | | |"""
    )
    table = f"""<!-- scale:start -->
Last run: {results["when"]} ({results["cpus"]} cores; load average {results["load"]}: other processes shared the
machine). End-user path with RPM, RPD and TPM limits set.

{limiter}

One platform with 1,000 end users (budget, rate limits, 15 % markup each); wrk at concurrency {CONNECTIONS} for
{SECONDS} s rotating over one end user's key, then over {ROTATED_KEYS} of them; instances are separate processes,
each loaded by its own wrk with {CONNECTIONS} ÷ N connections. µs CPU: the instances' CPU time per answered request
(PostgreSQL's and Redis's not included); machine: every process's CPU time per answered request (the instances,
PostgreSQL, Redis, the upstream, wrk), and the cores it kept busy. Wallet row lock: p50 / p99 of how long each
transaction that changed the platform's wallet row held it, from the `UPDATE` that locked it to the commit for
`tollway_money_apply`'s transactions, and bounded from above (from the transaction's start, or the previous holder's
commit when it queued) for the locked path's; then that bound for all, and the whole transactions, {PROBE_SECONDS} s
over {ROTATED_KEYS} keys (bench/walletlock.py).

| Configuration | one key | {ROTATED_KEYS} of 1,000 keys | {ROTATED_KEYS} keys ÷ one | wallet row lock p50 / p99 |
|---|---|---|---|---|
{crowd_rows(results)}

| Ratio | one key | {ROTATED_KEYS} keys | the worse | Target |
|---|---|---|---|---|
{ratio_rows(results["ratios"])}
<!-- scale:end -->"""
    doc = ROOT / "docs" / "performance.md"
    text = doc.read_text()
    if "<!-- scale:start -->" not in text:
        text += "\n## Scale-out (`make bench-scale`)\n\n<!-- scale:start -->\n<!-- scale:end -->\n"
    text = re.sub(r"<!-- scale:start -->.*<!-- scale:end -->", lambda _m: table, text, flags=re.S)
    doc.write_text(text)


def main() -> None:
    if not shutil.which("wrk"):
        sys.exit("bench needs wrk: apt-get install -y wrk")
    skipped = [name for name, ok in (("PostgreSQL", postgres_available()), ("Redis", redis_binary())) if not ok]
    if skipped:
        print(
            f"bench-scale: {' and '.join(skipped)} not installed: SKIPPING the PostgreSQL + Redis figures", flush=True
        )
    loaded_at_start = os.getloadavg()[0]
    upstream_port = free_port()
    upstream = subprocess.Popen(
        pinned(1, [TOLLWAY, "fake-upstream", "--port", str(upstream_port)]), stdout=subprocess.DEVNULL
    )
    # Redis shares core 1 with the upstream and the clients, so it never competes with a lone instance on core 0.
    redis = None if "Redis" in skipped else RedisServer(tuple(pinned(1, [])))
    postgres = None if skipped else PostgresServer()
    try:
        wait_port(upstream_port)
        if redis is not None:
            redis.start()
        if postgres is not None:
            postgres.start()
        results: dict[str, Any] = {
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "skipped": " and ".join(skipped) + " not installed" if skipped else None,
            "limiter": None if redis is None else limiter_latency(upstream_port, redis),
            "sqlite": sqlite_crowd(upstream_port),
            "postgres": None if postgres is None or redis is None else postgres_crowd(upstream_port, redis, postgres),
        }
    finally:
        upstream.terminate()
        upstream.wait(timeout=20)
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()
    results["ratios"] = ratios(results["sqlite"], results["postgres"])
    results["load"] = f"{loaded_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    write_report(results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
