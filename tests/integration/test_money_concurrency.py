"""Money under real concurrency: holds make overspending impossible, on SQLite and across two PostgreSQL-backed
gateway processes (SPEC §9.3, §9.6)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.support.invariants import assert_invariants
from tests.support.processes import GatewayProcess
from tests.support.seed import cent_tenant
from tollway.fake_upstream.server import FakeUpstreamThread

CALLS = 1000
BODY = {"model": "cent", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10}


async def _fire(urls: list[str], key: str, calls: int) -> list[tuple[int, str | None]]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def one(i: int) -> tuple[int, str | None]:
            url = urls[i % len(urls)] + "/v1/chat/completions"
            async with session.post(url, json=BODY, headers={"Authorization": f"Bearer {key}"}) as response:
                payload = await response.json()
                code = payload["error"]["code"] if response.status != 200 else None
                return response.status, code

        results = await asyncio.gather(*(one(i) for i in range(calls)))
    await asyncio.sleep(0.1)  # let the closed connections' transports finish closing before the loop ends
    return results


def settled(read: Callable[[], dict[str, Any]], timeout: float = 15.0) -> dict[str, Any]:
    """Settlements commit right after the responses (group commit): wait until nothing is held any more."""
    deadline = time.monotonic() + timeout
    while True:
        state = read()
        if state["held_usd"] == 0 or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def test_thousand_cent_calls_against_five_dollars(
    instances: list[GatewayProcess], fake_upstream: FakeUpstreamThread
) -> None:
    first = instances[0]
    settings = first.settings
    tenant = cent_tenant(first.url, settings.admin_key, fake_upstream.base_url, topup="5")
    before = fake_upstream.request_count

    results = asyncio.run(_fire([p.url for p in instances], tenant.platform_key, CALLS))

    counts = Counter(status for status, _ in results)
    assert counts == {200: 500, 402: 500}, counts
    assert {code for status, code in results if status == 402} == {"wallet_insufficient"}
    assert fake_upstream.request_count - before == 500
    wallet = settled(lambda: tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json())
    assert wallet["balance_usd"] == 0
    assert wallet["held_usd"] == 0
    rows = tenant.client.get(
        f"/v1/platforms/{tenant.platform_id}/wallet/transactions", params={"limit": 1, "type": "usage"}
    ).json()
    assert rows["total"] == 500
    assert_invariants(settings)
    tenant.client.close()
