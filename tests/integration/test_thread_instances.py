"""Thread serialisation across real ``tollway serve`` processes (SPEC §16.4): concurrent requests on one thread,
spread over the instances sharing a database (two on PostgreSQL, one on SQLite), are answered by exactly one
200 and otherwise 409 ``thread_busy``; the thread then holds exactly that one response."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import httpx

from tests.support.processes import GatewayProcess
from tests.support.seed import create_model, create_provider, create_tenant
from tollway.fake_upstream.server import FakeUpstreamThread

REQUESTS = 8


async def _fire(urls: list[str], key: str, body: dict[str, object]) -> list[tuple[int, str | None]]:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(i: int) -> tuple[int, str | None]:
            async with session.post(urls[i % len(urls)] + "/v1/responses", json=body, headers=headers) as response:
                payload = await response.json()
                return response.status, payload["error"]["code"] if response.status != 200 else None

        return await asyncio.gather(*(one(i) for i in range(REQUESTS)))


def test_one_request_per_thread_across_instances(
    instances: list[GatewayProcess], fake_upstream: FakeUpstreamThread
) -> None:
    first = instances[0]
    headers = {"Authorization": f"Bearer {first.settings.admin_key}"}
    with httpx.Client(base_url=first.url, headers=headers, timeout=30) as admin:
        provider = create_provider(admin, fake_upstream.base_url)
        create_model(admin, provider["id"], "slow", "fake/echo?ms=3000")
        tenant = create_tenant(admin, first.url, provider["id"], provider["slug"])
    thread = f"t-{uuid.uuid4().hex[:12]}"
    body = {"model": "slow", "input": "race", "thread_id": thread}
    results = asyncio.run(_fire([p.url for p in instances], tenant.platform_key, body))
    assert sorted(status for status, _ in results) == [200] + [409] * (REQUESTS - 1), results
    assert {code for status, code in results if status == 409} == {"thread_busy"}
    auth = {"Authorization": f"Bearer {tenant.platform_key}"}
    after = httpx.post(f"{instances[-1].url}/v1/responses", json={**body, "model": "slow"}, headers=auth, timeout=30)
    assert after.status_code == 200, after.text  # released: free again on every instance
    for process in instances:
        got = httpx.get(f"{process.url}/v1/threads/{thread}", headers=auth)
        assert got.status_code == 200 and got.json()["response_count"] == 2
    tenant.client.close()
