"""``make bench``: Tollway's added latency and throughput against direct-to-upstream, measured in the same run.

Layout on a 2-core machine: the gateway (one worker) pinned to core 0; the fake upstream, the latency client and
wrk pinned to core 1. Latency is measured at concurrency 1 with interleaved blocks (direct, gateway, direct, ...)
so drift hits both sides alike; throughput at concurrency 32 with wrk. Results go to bench/results/latest.json and
the table in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench.crowd needs the root

from bench.crowd import ROTATED_KEYS, seed_crowd, wrk_rotating

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 64}
# The embeddings line: one input, as the openai SDK sends it by default (base64 vectors, passed through).
EMBED_BODY = {
    "model": "bench-embed",
    "input": "The quick brown fox jumps over the lazy dog.",
    "encoding_format": "base64",
}
EMBED_UPSTREAM = "text-embedding-3-small"
# The chat call in Anthropic's Messages shape (POST /v1/messages): its added latency is the translation's cost.
# One MCP ``tools/call`` of the demo's built-in app (stateless Streamable HTTP, JSON answers): direct to the app and
# through the proxy ``/v1/mcp/{slug}`` with an end-user key (budget hold, markup, a billed call: no free tier).
MCP_SLUG = "bench-tools"
MCP_BODY = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "lookup_order", "arguments": {"order_id": "A-1001"}},
}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
MCP_SERVE = (
    "import sys, uvicorn\n"
    "from tollway.fake_upstream.mcp_app import demo_mcp_app\n"
    "uvicorn.run(demo_mcp_app(), host='127.0.0.1', port=int(sys.argv[1]), log_level='warning', access_log=False)\n"
)
MESSAGES_BODY = {
    "model": "bench",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello in five words."}],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int, argv: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(core), *argv]
    return argv


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


async def seed(
    base: str,
    admin_key: str,
    upstream: str,
    upstream_model: str,
    limits: dict[str, int] | None = None,
    mcp_url: str | None = None,
) -> tuple[str, str]:
    """The platform key, and the key of an end user with a budget (the end-user path: two holds, markup) and, when
    ``limits`` is given, a rate-limit override so that every call goes through the limiter's backend. With
    ``mcp_url``, the MCP app there is the platform's ``MCP_SLUG`` (no auth, $0.001 a call, the free tier off)."""
    async with aiohttp.ClientSession() as s:

        async def call(method: str, path: str, key: str, body: Any) -> Any:
            async with s.request(method, base + path, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
                data = await r.json()
                assert r.status < 300, data
                return data

        provider = await call(
            "POST",
            "/v1/admin/providers",
            admin_key,
            {"slug": "fake", "name": "Fake", "kind": "openai_compatible", "base_url": upstream},
        )
        await call(
            "POST",
            "/v1/admin/models",
            admin_key,
            {
                "slug": "bench",
                "provider_id": provider["id"],
                "upstream_model": upstream_model,
                "input_price_per_mtok": "0.15",
                "output_price_per_mtok": "0.6",
                "max_output_tokens": 256,
            },
        )
        await call(
            "POST",
            "/v1/admin/models",
            admin_key,
            {
                "slug": "bench-embed",
                "provider_id": provider["id"],
                "upstream_model": EMBED_UPSTREAM,
                "input_price_per_mtok": "0.02",
                "output_price_per_mtok": "0",
                "max_output_tokens": 1,
                "context_window": 8192,
            },
        )
        created = await call("POST", "/v1/admin/platforms", admin_key, {"name": "Bench"})
        pid, key = created["platform"]["id"], created["api_key"]["raw_key"]
        await call("POST", f"/v1/platforms/{pid}/llm-configs", key, {"provider_id": provider["id"], "api_key": "sk-x"})
        await call("POST", f"/v1/admin/platforms/{pid}/wallet/topup", admin_key, {"amount_usd": "100000"})
        user = await call("POST", f"/v1/platforms/{pid}/end-users", key, {"external_id": "bench"})
        await call("POST", f"/v1/platforms/{pid}/end-users/{user['id']}/budget", key, {"max_usd": "100000"})
        if limits:
            await call("PUT", f"/v1/platforms/{pid}/end-users/{user['id']}/rate-limits", key, limits)
        if mcp_url is not None:
            await call("PATCH", f"/v1/platforms/{pid}", key, {"settings": {"mcp_free_calls_per_month": 0}})
            app = {"slug": MCP_SLUG, "name": "Bench tools", "server_url": mcp_url, "auth": {"type": "none"}}
            await call("POST", f"/v1/platforms/{pid}/mcp/apps", key, {**app, "price_per_call_usd": "0.001"})
        return key, user["api_key"]["raw_key"]


async def latency_block(session: aiohttp.ClientSession, url: str, key: str, body: bytes, n: int) -> list[float]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            assert response.status == 200, response.status
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def measure_latency(
    direct: str,
    gateway: str,
    key: str,
    user_key: str,
    blocks: int,
    per_block: int,
    bodies: tuple[dict[str, Any], dict[str, Any]] = ({**BODY, "model": "fake/default"}, BODY),
    messages: str | None = None,
) -> dict[str, float]:
    """``messages``: the /v1/messages URL, measured (platform key) in the same interleaved blocks."""
    body_direct, body_gateway = (json.dumps(body).encode() for body in bodies)
    body_messages = json.dumps(MESSAGES_BODY).encode()
    direct_s: list[float] = []
    gateway_s: list[float] = []
    user_s: list[float] = []
    messages_s: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        await latency_block(session, direct, "sk-x", body_direct, 200)  # warm-up every path
        await latency_block(session, gateway, key, body_gateway, 200)
        await latency_block(session, gateway, user_key, body_gateway, 200)
        if messages is not None:
            await latency_block(session, messages, key, body_messages, 200)
        for _ in range(blocks):
            direct_s += await latency_block(session, direct, "sk-x", body_direct, per_block)
            gateway_s += await latency_block(session, gateway, key, body_gateway, per_block)
            user_s += await latency_block(session, gateway, user_key, body_gateway, per_block)
            if messages is not None:
                messages_s += await latency_block(session, messages, key, body_messages, per_block)

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "direct_p50_ms": pct(direct_s, 0.50),
        "direct_p99_ms": pct(direct_s, 0.99),
        "gateway_p50_ms": pct(gateway_s, 0.50),
        "gateway_p99_ms": pct(gateway_s, 0.99),
        "added_p50_ms": pct(gateway_s, 0.50) - pct(direct_s, 0.50),
        "added_p99_ms": pct(gateway_s, 0.99) - pct(direct_s, 0.99),
        "added_mean_ms": statistics.fmean(gateway_s) - statistics.fmean(direct_s),
        "end_user_p50_ms": pct(user_s, 0.50),
        "end_user_added_p50_ms": pct(user_s, 0.50) - pct(direct_s, 0.50),
        "end_user_added_p99_ms": pct(user_s, 0.99) - pct(direct_s, 0.99),
        "samples": len(gateway_s),
    } | (
        {
            "messages_p50_ms": pct(messages_s, 0.50),
            "messages_added_p50_ms": pct(messages_s, 0.50) - pct(direct_s, 0.50),
            "messages_added_p99_ms": pct(messages_s, 0.99) - pct(direct_s, 0.99),
        }
        if messages_s
        else {}
    )


async def mcp_block(session: aiohttp.ClientSession, url: str, headers: dict[str, str], n: int) -> list[float]:
    body = json.dumps(MCP_BODY).encode()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            answer = await response.read()
            assert response.status == 200 and b'"result"' in answer, (response.status, answer[:200])
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def measure_mcp(direct: str, proxy: str, user_key: str, blocks: int, per_block: int) -> dict[str, float]:
    """``tools/call`` direct to the app and through the proxy, in interleaved blocks on one connection each way."""
    via = {**MCP_HEADERS, "Authorization": f"Bearer {user_key}"}
    direct_s: list[float] = []
    proxy_s: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2)) as session:
        await mcp_block(session, direct, MCP_HEADERS, 100)  # warm-up both paths
        await mcp_block(session, proxy, via, 100)
        for _ in range(blocks):
            direct_s += await mcp_block(session, direct, MCP_HEADERS, per_block)
            proxy_s += await mcp_block(session, proxy, via, per_block)

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "direct_p50_ms": pct(direct_s, 0.50),
        "direct_p99_ms": pct(direct_s, 0.99),
        "proxy_p50_ms": pct(proxy_s, 0.50),
        "proxy_p99_ms": pct(proxy_s, 0.99),
        "added_p50_ms": pct(proxy_s, 0.50) - pct(direct_s, 0.50),
        "added_p99_ms": pct(proxy_s, 0.99) - pct(direct_s, 0.99),
        "samples": len(proxy_s),
    }


def mcp_row(mcp: dict[str, float] | None) -> str:
    if not mcp:
        return "| MCP `tools/call` through the proxy (end-user key, billed), p50 / p99, concurrency 1 | | not measured | | |"
    return (
        f"| MCP `tools/call` through the proxy (end-user key, billed), p50 / p99, concurrency 1 | "
        f"{mcp['direct_p50_ms']:.3f} / {mcp['direct_p99_ms']:.3f} ms | {mcp['proxy_p50_ms']:.3f} / "
        f"{mcp['proxy_p99_ms']:.3f} ms | **+{mcp['added_p50_ms']:.3f} / +{mcp['added_p99_ms']:.3f} ms** | p50 < 2 ms |"
    )


# wrk's own latency histogram (µs), printed by its ``done`` hook: p50, p99 and p99.9 of every request of the run.
_WRK_TAIL = (
    "done = function(summary, latency, requests)\n"
    '  io.write(string.format("tail-us: %d %d %d\\n", latency:percentile(50), latency:percentile(99),'
    " latency:percentile(99.9)))\n"
    "end\n"
)


def wrk(url: str, key: str, body: dict[str, Any], seconds: int, connections: int, core: int) -> float:
    return wrk_run(url, key, body, seconds, connections, core)[0]


def wrk_tail(url: str, key: str, body: dict[str, Any], seconds: int, core: int) -> dict[str, float]:
    """One connection for ``seconds``, the way a user probes tail latency: p50, p99 and p99.9 in ms."""
    _rps, (p50, p99, p999) = wrk_run(url, key, body, seconds, 1, core)
    return {"p50_ms": p50 / 1000, "p99_ms": p99 / 1000, "p999_ms": p999 / 1000}


def wrk_run(
    url: str, key: str, body: dict[str, Any], seconds: int, connections: int, core: int
) -> tuple[float, tuple[int, int, int]]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n' + _WRK_TAIL
    )
    out = subprocess.run(
        pinned(core, ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"wrk saw {non2xx.group(1)} failed responses:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    tail = re.search(r"tail-us: (\d+) (\d+) (\d+)", out)
    assert match and tail, out
    p50, p99, p999 = (int(v) for v in tail.groups())
    return float(match.group(1)), (p50, p99, p999)


def measure_crowd(base: str, admin_key: str, seconds: int) -> dict[str, float]:
    """The end-user path at concurrency 32 as platforms load it (issue 18): a platform with 1,000 end users, wrk
    rotating over 50 of their keys, beside one of them (bench/crowd.py)."""
    crowd = asyncio.run(seed_crowd(base, admin_key))
    url, pin = base + "/v1/chat/completions", pinned(1, [])
    wrk_rotating(url, crowd.user_keys[:ROTATED_KEYS], BODY, 3, 32, pin)  # warm every end user's caches
    one = wrk_rotating(url, crowd.user_keys[:1], BODY, seconds, 32, pin)
    many = wrk_rotating(url, crowd.user_keys[:ROTATED_KEYS], BODY, seconds, 32, pin)
    return {"one_key_rps": one.rps, "one_key_p99_ms": one.p99_ms, "keys_rps": many.rps, "keys_p99_ms": many.p99_ms}


def crowd_row(crowd: dict[str, float] | None) -> str:
    if not crowd:
        return f"| end-user path, concurrency 32, {ROTATED_KEYS} of 1,000 end users' keys | | not measured | | |"
    return (
        f"| end-user path, concurrency 32: one end user's key / {ROTATED_KEYS} of 1,000 end users' keys | | "
        f"{crowd['one_key_rps']:.0f} / {crowd['keys_rps']:.0f} req/s (p99 {crowd['one_key_p99_ms']:.0f} / "
        f"{crowd['keys_p99_ms']:.0f} ms) | **{crowd['keys_rps'] / crowd['one_key_rps']:.2f}×** | ≥ 0.9× |"
    )


CONSOLE_PAGES = {
    "operator": ["/console", "/console/providers", "/console/models", "/console/reconcile", "/console/platforms/{pid}"],
    "platform": [
        "/console",
        "/console/wallet",
        "/console/end-users",
        "/console/end-users/{uid}",
        "/console/keys",
        "/console/llm-configs",
        "/console/models",
        "/console/logs",
        "/console/webhooks",
        "/console/mcp-apps",
    ],
    "end_user": ["/console", "/console/usage", "/console/keys", "/console/mcp"],
}


async def console_latency(base: str, keys: dict[str, str], ids: dict[str, str], samples: int) -> dict[str, float]:
    """p50 in ms of every console page, signed in with each kind of key (a session cookie, as a browser has)."""
    results: dict[str, float] = {}
    for kind, paths in CONSOLE_PAGES.items():
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
        async with aiohttp.ClientSession(base_url=base, cookie_jar=jar) as s:
            async with s.get("/console/sign-in") as r:
                token = re.search(r'name="csrf" value="([^"]+)"', await r.text())
            assert token, "no sign-in form"
            form = {"csrf": token.group(1), "key": keys[kind]}
            async with s.post("/console/sign-in", data=form, allow_redirects=False) as r:
                assert r.status == 303, (kind, r.status)
            for template in paths:
                path = template.format(**ids)
                timings = []
                for i in range(samples + 5):  # the first five warm up
                    start = time.perf_counter()
                    async with s.get(path, allow_redirects=False) as r:
                        await r.read()
                        assert r.status == 200, (kind, path, r.status)
                    if i >= 5:
                        timings.append((time.perf_counter() - start) * 1000)
                results[f"{kind} {template}"] = statistics.median(timings)
    return results


def measure_console(tollway: str, work: Path, env: dict[str, str], admin_key: str, samples: int) -> dict[str, float]:
    """A second gateway on its own SQLite file with the demo's data (30 days of usage, as ``make run`` seeds it)."""
    from tollway.demo import seed as seed_demo
    from tollway.demo import seed_history
    from tollway.fake_upstream.server import FakeUpstreamThread
    from tollway.settings import Settings

    port = free_port()
    database = f"sqlite:///{work / 'console.db'}"
    proc = subprocess.Popen(
        pinned(0, [tollway, "serve"]),
        env={**env, "TOLLWAY_DATABASE_URL": database, "TOLLWAY_PORT": str(port), "TOLLWAY_ALLOW_PRIVATE_URLS": "true"},
    )
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        with FakeUpstreamThread() as fake:
            seeded = asyncio.run(seed_demo(base, admin_key, fake.base_url, "http://127.0.0.1:9/mcp"))  # never called
        asyncio.run(seed_history(Settings(database_url=database), seeded))
        keys = {"operator": admin_key, "platform": seeded["platform_key"], "end_user": seeded["end_user_key"]}
        ids = {"pid": seeded["platform_id"], "uid": seeded["end_user_id"]}
        return asyncio.run(console_latency(base, keys, ids, samples))
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def console_row(console: dict[str, float] | None) -> str:
    """One table row: the slowest console page's p50 on the demo's data (every page is in latest.json)."""
    if not console:
        return "| console pages, p50 (demo data) | | not measured | | < 50 ms |"
    slowest = max(console, key=lambda page: console[page])
    return (
        f"| console pages, p50 (demo data, {len(console)} pages) | | slowest: {console[slowest]:.1f} ms "
        f"(`{slowest}`), median page {statistics.median(console.values()):.1f} ms | | < 50 ms |"
    )


def write_report(results: dict[str, Any]) -> None:
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    lat, thr, emb, tail = results["latency"], results["throughput"], results["embeddings"], results["tail"]
    table = f"""<!-- bench:start -->
Last run: {results["when"]} on {results["machine"]} ({results["cpus"]} cores), {results["store"]}, one worker,
platform-key path, `{results["upstream_model"]}` upstream.

| Measure | Direct to upstream | Through Tollway | Added / ratio | Target |
|---|---|---|---|---|
| p50 latency, concurrency 1 | {lat["direct_p50_ms"]:.3f} ms | {lat["gateway_p50_ms"]:.3f} ms | **+{lat["added_p50_ms"]:.3f} ms** | ≤ 1.0 ms |
| p99 latency, concurrency 1 | {lat["direct_p99_ms"]:.3f} ms | {lat["gateway_p99_ms"]:.3f} ms | **+{lat["added_p99_ms"]:.3f} ms** | ≤ 2.0 ms |
| throughput, concurrency 32 | {thr["direct_rps"]:.0f} req/s | {thr["gateway_rps"]:.0f} req/s | **{thr["ratio"]:.2f}×** of direct | ≥ 1,500 req/s |
{crowd_row(results.get("crowd"))}
| end-user path (budget hold + markup), p50, concurrency 1 | | {lat["end_user_p50_ms"]:.3f} ms | **+{lat["end_user_added_p50_ms"]:.3f} ms**, {lat["end_user_added_p50_ms"] / lat["added_p50_ms"]:.2f}× the platform path | ≤ 1.5× |
| end-user path, p99, concurrency 1 | | | +{lat["end_user_added_p99_ms"]:.3f} ms | |
| end-user path, wrk 1 connection × {results["tail_seconds"]} s: p50 / p99 / p99.9 | {tail["direct_p50_ms"]:.2f} / {tail["direct_p99_ms"]:.2f} / {tail["direct_p999_ms"]:.2f} ms | {tail["gateway_p50_ms"]:.2f} / {tail["gateway_p99_ms"]:.2f} / {tail["gateway_p999_ms"]:.2f} ms | **+{tail["added_p50_ms"]:.2f} / +{tail["added_p99_ms"]:.2f} / +{tail["added_p999_ms"]:.2f} ms** | p99 ≤ +3 ms |
| `/v1/messages` (the chat call in Anthropic's shape), p50, concurrency 1 | | {lat["messages_p50_ms"]:.3f} ms | **+{lat["messages_added_p50_ms"]:.3f} ms**, {lat["messages_added_p50_ms"] / lat["added_p50_ms"]:.2f}× the chat path | ≤ 1.2× |
| embeddings (one input, base64), p50 / p99, concurrency 1 | {emb["direct_p50_ms"]:.3f} / {emb["direct_p99_ms"]:.3f} ms | {emb["gateway_p50_ms"]:.3f} / {emb["gateway_p99_ms"]:.3f} ms | **+{emb["added_p50_ms"]:.3f} / +{emb["added_p99_ms"]:.3f} ms** | |
| embeddings throughput, concurrency 32 | {emb["direct_rps"]:.0f} req/s | {emb["gateway_rps"]:.0f} req/s | **{emb["ratio"]:.2f}×** of direct | |
{mcp_row(results.get("mcp"))}
{console_row(results.get("console_p50_ms"))}
<!-- bench:end -->"""
    doc = ROOT / "docs" / "performance.md"
    text = doc.read_text() if doc.exists() else "<!-- bench:start -->\n<!-- bench:end -->\n"
    text = re.sub(r"<!-- bench:start -->.*<!-- bench:end -->", lambda _m: table, text, flags=re.S)
    doc.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--per-block", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--mcp-per-block", type=int, default=100, help="MCP tools/call samples per block, each way")
    parser.add_argument("--upstream-model", default="fake/default")
    parser.add_argument("--console-samples", type=int, default=30, help="requests per console page (p50)")
    parser.add_argument("--tail-seconds", type=int, default=30, help="the concurrency-1 tail run (wrk), each side")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench needs wrk: apt-get install -y wrk")
    tollway = str(Path(sys.executable).with_name("tollway"))
    work = Path(tempfile.mkdtemp(prefix="tollway-bench-"))
    upstream_port, gateway_port, mcp_port = free_port(), free_port(), free_port()
    admin_key = "sk-admin_" + secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "TOLLWAY_DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
        "TOLLWAY_ADMIN_KEY": admin_key,
        "TOLLWAY_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
        "TOLLWAY_DATA_DIR": str(work),
        "TOLLWAY_PORT": str(gateway_port),
        "TOLLWAY_LOG_LEVEL": "warning",
        "TOLLWAY_ALLOW_PRIVATE_URLS": "true",  # the MCP app on 127.0.0.1
    }
    procs = [
        subprocess.Popen(pinned(1, [sys.executable, "-c", MCP_SERVE, str(mcp_port)])),
        subprocess.Popen(
            pinned(1, [tollway, "fake-upstream", "--port", str(upstream_port)]), stdout=subprocess.DEVNULL
        ),
        subprocess.Popen(pinned(0, [tollway, "serve"]), env=env),
    ]
    try:
        wait_port(upstream_port)
        wait_port(gateway_port)
        wait_port(mcp_port)
        upstream = f"http://127.0.0.1:{upstream_port}/v1"
        gateway = f"http://127.0.0.1:{gateway_port}/v1"
        mcp_direct = f"http://127.0.0.1:{mcp_port}/mcp"
        key, user_key = asyncio.run(
            seed(gateway.removesuffix("/v1"), admin_key, upstream, args.upstream_model, mcp_url=mcp_direct)
        )
        mcp = asyncio.run(
            measure_mcp(mcp_direct, f"{gateway}/mcp/{MCP_SLUG}", user_key, args.blocks, args.mcp_per_block)
        )
        latency = asyncio.run(
            measure_latency(
                upstream + "/chat/completions",
                gateway + "/chat/completions",
                key,
                user_key,
                args.blocks,
                args.per_block,
                messages=gateway + "/messages",
            )
        )
        direct_body = {**BODY, "model": args.upstream_model}
        # The tail as a user measures it (issue 18): wrk, one connection, 30 s, the end-user path (budget hold,
        # markup, rate limits) on the disk-backed SQLite database with default settings, beside the same upstream.
        tail_direct = wrk_tail(upstream + "/chat/completions", "sk-x", direct_body, args.tail_seconds, 1)
        tail_gateway = wrk_tail(gateway + "/chat/completions", user_key, BODY, args.tail_seconds, 1)
        tail = {f"direct_{k}": v for k, v in tail_direct.items()} | {f"gateway_{k}": v for k, v in tail_gateway.items()}
        tail |= {f"added_{k}": tail_gateway[k] - tail_direct[k] for k in tail_direct}
        direct_rps = wrk(upstream + "/chat/completions", "sk-x", direct_body, args.seconds, 32, 1)
        gateway_rps = wrk(gateway + "/chat/completions", key, BODY, args.seconds, 32, 1)
        crowd = measure_crowd(gateway.removesuffix("/v1"), admin_key, args.seconds)
        embed_direct = {**EMBED_BODY, "model": EMBED_UPSTREAM}
        embeddings = asyncio.run(
            measure_latency(
                upstream + "/embeddings",
                gateway + "/embeddings",
                key,
                user_key,
                args.blocks,
                args.per_block,
                (embed_direct, EMBED_BODY),
            )
        )
        embed_direct_rps = wrk(upstream + "/embeddings", "sk-x", embed_direct, args.seconds, 32, 1)
        embed_gateway_rps = wrk(gateway + "/embeddings", key, EMBED_BODY, args.seconds, 32, 1)
        embeddings |= {
            "direct_rps": embed_direct_rps,
            "gateway_rps": embed_gateway_rps,
            "ratio": embed_gateway_rps / embed_direct_rps,
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
    try:
        console = measure_console(tollway, work, env, admin_key, args.console_samples)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "store": "SQLite",
        "upstream_model": args.upstream_model,
        "latency": latency,
        "throughput": {"direct_rps": direct_rps, "gateway_rps": gateway_rps, "ratio": gateway_rps / direct_rps},
        "crowd": crowd,
        "embeddings": embeddings,
        "tail": tail,
        "tail_seconds": args.tail_seconds,
        "console_p50_ms": console,
        "mcp": mcp,
    }
    write_report(results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
