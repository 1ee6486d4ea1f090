"""Many end users, as platforms run Tollway (issue 18): one platform seeded with a crowd of end users through the API
(each with a budget, rate limits and the platform's markup, like the bench's end user), and wrk load that rotates
the ``Authorization`` header over some of their keys, request by request."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

# High enough never to refuse a call in a benchmark, set so that every call goes through the limiter's backend.
CROWD_LIMITS = {"rpm_limit": 10_000_000, "rpd_limit": 100_000_000, "tpm_limit": 1_000_000_000}
CROWD_USERS = 1_000
ROTATED_KEYS = 50
_SEED_CONCURRENCY = 32


@dataclass(frozen=True)
class Crowd:
    platform_id: str
    platform_key: str
    user_keys: list[str]


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    socket_errors: int  # connect, read, write errors and timeouts (10 s): requests that got no answer at all


async def seed_crowd(base: str, admin_key: str, users: int = CROWD_USERS, provider_slug: str = "fake") -> Crowd:
    """A new platform on the operator's provider ``provider_slug`` (15 % markup, a funded wallet) with ``users`` end
    users, each with a budget and rate-limit overrides; seeded by concurrent API calls (three per end user)."""
    async with aiohttp.ClientSession(base_url=base, connector=aiohttp.TCPConnector(limit=_SEED_CONCURRENCY)) as s:

        async def call(method: str, path: str, key: str, body: Any = None) -> Any:
            async with s.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
                data = await r.json()
                assert r.status < 300, (path, data)
                return data

        providers = await call("GET", "/v1/admin/providers", admin_key)
        provider_id = next(p["id"] for p in providers["data"] if p["slug"] == provider_slug)
        created = await call("POST", "/v1/admin/platforms", admin_key, {"name": "Crowd"})
        pid, key = created["platform"]["id"], created["api_key"]["raw_key"]
        await call("PATCH", f"/v1/platforms/{pid}", key, {"settings": {"markup_percentage": 15}})
        await call("POST", f"/v1/platforms/{pid}/llm-configs", key, {"provider_id": provider_id, "api_key": "sk-x"})
        await call("POST", f"/v1/admin/platforms/{pid}/wallet/topup", admin_key, {"amount_usd": "100000"})
        gate = asyncio.Semaphore(_SEED_CONCURRENCY)

        async def end_user(i: int) -> str:
            async with gate:
                user = await call("POST", f"/v1/platforms/{pid}/end-users", key, {"external_id": f"crowd-{i}"})
                path = f"/v1/platforms/{pid}/end-users/{user['id']}"
                await call("POST", f"{path}/budget", key, {"max_usd": "100"})
                await call("PUT", f"{path}/rate-limits", key, CROWD_LIMITS)
                return str(user["api_key"]["raw_key"])

        keys = await asyncio.gather(*(end_user(i) for i in range(users)))
    return Crowd(pid, key, list(keys))


def rotation_script(keys: list[str], body: dict[str, Any]) -> str:
    """wrk's Lua: one pre-formatted request per key, sent in turn (one key is the same script with one entry, so
    both sides of a comparison pay wrk the same); the ``done`` hook prints p50, p99 and p99.9 in µs."""
    payload = json.dumps(json.dumps(body))
    requests = "\n".join(
        f'  requests[{i}] = wrk.format("POST", nil, {{["Content-Type"] = "application/json", '
        f'["Authorization"] = "Bearer {key}"}}, {payload})'
        for i, key in enumerate(keys, start=1)
    )
    return (
        "local requests = {}\n"
        "local turn = 0\n"
        f"init = function(args)\n{requests}\nend\n"
        "request = function()\n"
        "  turn = turn % #requests + 1\n"
        "  return requests[turn]\n"
        "end\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("tail-us: %d %d %d\\n", latency:percentile(50), latency:percentile(99),'
        " latency:percentile(99.9)))\n"
        "end\n"
    )


def wrk_rotating(
    url: str, keys: list[str], body: dict[str, Any], seconds: int, connections: int, pin: list[str]
) -> WrkResult:
    """``wrk -t1`` with the rotation script, behind ``pin`` (a ``taskset`` prefix, or nothing). Every answer must
    be a 2xx: a refused call would flatter the figure."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(rotation_script(keys, body))
    script = Path(handle.name)
    try:
        argv = [*pin, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    finally:
        script.unlink()
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if failed:
        raise RuntimeError(f"wrk saw {failed.group(1)} failed responses:\n{out}")
    rps, tail = re.search(r"Requests/sec:\s+([\d.]+)", out), re.search(r"tail-us: (\d+) (\d+) (\d+)", out)
    assert rps and tail, out
    p50, p99, p999 = (int(v) / 1000 for v in tail.groups())
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(float(rps.group(1)), p50, p99, p999, sum(map(int, errors.groups())) if errors else 0)
