"""``make bench-scale``: the scale-out figures of issue 4, measured in one run.

1. Rate limits through Redis against in-process: the end-user path (budget hold, markup, RPM/RPD/TPM limits set so
   every call goes through the limiter's backend), added p50/p99 at concurrency 1, one worker on SQLite each;
   both gateways run at once and are measured in interleaved blocks.
2. Throughput at concurrency 32 (wrk, end-user path) of ``tollway serve`` with 1 and with 2 workers on PostgreSQL
   and Redis. On a 2-core machine the second worker competes with the fake upstream and wrk for the cores.

Results go to bench/results/scale.json and the scale table in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import BODY, ROOT, free_port, latency_block, pinned, seed, wait_port, wrk
from tests.support.redis_server import RedisServer
from tests.support.servers import PostgresServer

LIMITS = {"rpm_limit": 10_000_000, "rpd_limit": 100_000_000, "tpm_limit": 1_000_000_000}
TOLLWAY = str(Path(sys.executable).with_name("tollway"))


@contextmanager
def gateway(database_url: str, upstream_port: int, redis_url: str | None, workers: int) -> Iterator[dict[str, str]]:
    """A seeded ``tollway serve``; yields its URL and the platform and end-user keys."""
    work = Path(tempfile.mkdtemp(prefix="tollway-scale-"))
    port, admin_key = free_port(), "sk-admin_" + secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "TOLLWAY_DATABASE_URL": database_url.replace("{work}", str(work)),
        "TOLLWAY_ADMIN_KEY": admin_key,
        "TOLLWAY_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
        "TOLLWAY_DATA_DIR": str(work),
        "TOLLWAY_PORT": str(port),
        "TOLLWAY_WORKERS": str(workers),
        "TOLLWAY_LOG_LEVEL": "warning",
    }
    if redis_url:
        env["TOLLWAY_REDIS_URL"] = redis_url
    argv = [TOLLWAY, "serve"]
    process = subprocess.Popen(pinned(0, argv) if workers == 1 else argv, env=env)
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        upstream = f"http://127.0.0.1:{upstream_port}/v1"
        key, user_key = asyncio.run(seed(base, admin_key, upstream, "fake/default", LIMITS))
        yield {"url": base + "/v1/chat/completions", "key": key, "user_key": user_key}
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def limiter_latency(upstream_port: int, redis: RedisServer, blocks: int = 8, per_block: int = 300) -> dict[str, Any]:
    """Both gateways run at once (pinned to the same core, each idle while the other is measured) and are measured
    in interleaved blocks with the upstream itself, so drift on this shared machine hits every path alike."""
    direct = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    with contextlib.ExitStack() as stack:
        gateways = {
            name: stack.enter_context(gateway("sqlite:///{work}/bench.db", upstream_port, redis_url, 1))
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


def worker_throughput(upstream_port: int, redis: RedisServer, postgres: PostgresServer, seconds: int) -> dict[str, Any]:
    rps: dict[str, Any] = {}
    for workers in (1, 2):
        with gateway(postgres.new_database(), upstream_port, redis.url, workers) as gw:
            wrk(gw["url"], gw["user_key"], BODY, 3, 32, 1)  # warm every worker's caches and pools
            rps[f"workers_{workers}_rps"] = wrk(gw["url"], gw["user_key"], BODY, seconds, 32, 1)
    rps["ratio"] = rps["workers_2_rps"] / rps["workers_1_rps"]
    return rps


def write_report(results: dict[str, Any]) -> None:
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    lim, thr = results["limiter"], results["workers"]
    mem, red = lim["in_process"], lim["redis"]
    table = f"""<!-- scale:start -->
Last run: {results["when"]} ({results["cpus"]} cores). End-user path with RPM, RPD and TPM limits set.

| Measure | In-process limits | Redis limits | Ratio | Target |
|---|---|---|---|---|
| added p50, concurrency 1 (SQLite, 1 worker) | +{mem["end_user_added_p50_ms"]:.3f} ms | +{red["end_user_added_p50_ms"]:.3f} ms | **{lim["ratio_p50"]:.2f}×** | ≤ 1.3× |
| added p99, concurrency 1 | +{mem["end_user_added_p99_ms"]:.3f} ms | +{red["end_user_added_p99_ms"]:.3f} ms | | |

| Throughput, concurrency 32 (PostgreSQL + Redis) | 1 worker | 2 workers | Ratio |
|---|---|---|---|
| end-user path | {thr["workers_1_rps"]:.0f} req/s | {thr["workers_2_rps"]:.0f} req/s | **{thr["ratio"]:.2f}×** |
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
    upstream_port = free_port()
    upstream = subprocess.Popen(
        pinned(1, [TOLLWAY, "fake-upstream", "--port", str(upstream_port)]), stdout=subprocess.DEVNULL
    )
    # Redis shares core 1 with the upstream and the clients, so it never competes with a one-worker gateway.
    redis, postgres = RedisServer(tuple(pinned(1, []))), PostgresServer()
    try:
        wait_port(upstream_port)
        redis.start()
        postgres.start()
        results = {
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "limiter": limiter_latency(upstream_port, redis),
            "workers": worker_throughput(upstream_port, redis, postgres, 10),
        }
    finally:
        upstream.terminate()
        upstream.wait(timeout=20)
        redis.stop()
        postgres.stop()
    write_report(results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
