"""MCP calls across gateway processes (SPEC §16.1, §16.3): concurrent ``tools/call`` requests spread over the
instances (one on SQLite, two sharing PostgreSQL and Redis), through the proxy or in the tool loops of
``/v1/responses``, get exactly the platform's free calls for free, bill the rest once each, and leave the money
invariants intact."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import aiohttp
import httpx
import pytest

from tests.support.invariants import assert_invariants
from tests.support.mcp_app import McpApp
from tests.support.processes import GatewayProcess
from tests.support.seed import create_model, create_provider, create_tenant
from tollway.fake_upstream.server import FakeUpstreamThread

CALLS = 12
FREE = 4


@pytest.fixture(scope="module")
def app() -> Iterator[McpApp]:
    server = McpApp().start()
    yield server
    server.stop()


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def _fire(urls: list[str], key: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(i: int) -> dict[str, Any]:
            body = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "echo", "arguments": {}}}
            async with session.post(urls[i % len(urls)], json=body) as response:
                assert response.status == 200, await response.text()
                answer: dict[str, Any] = await response.json()
                return answer

        answers = await asyncio.gather(*(one(i) for i in range(CALLS)))
    await asyncio.sleep(0.1)
    return answers


def test_concurrent_calls_over_the_instances_get_exactly_the_free_tier(
    instances: list[GatewayProcess], app: McpApp
) -> None:
    first = instances[0]
    admin = httpx.Client(
        base_url=first.url, headers={"Authorization": f"Bearer {first.settings.admin_key}"}, timeout=30
    )
    body = {"name": f"Free {uuid.uuid4().hex[:6]}", "settings": {"mcp_free_calls_per_month": FREE}}
    created = _ok(admin.post("/v1/admin/platforms", json=body), 201)
    platform_id, key = created["platform"]["id"], created["api_key"]["raw_key"]
    _ok(admin.post(f"/v1/admin/platforms/{platform_id}/wallet/topup", json={"amount_usd": "1"}))
    platform = httpx.Client(base_url=first.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    app_body = {"slug": "tools", "name": "Tools", "server_url": app.url, "auth": {"type": "none"}}
    _ok(platform.post(f"/v1/platforms/{platform_id}/mcp/apps", json={**app_body, "price_per_call_usd": "0.01"}), 201)
    try:
        answers = asyncio.run(_fire([f"{p.url}/v1/mcp/tools" for p in instances], key))
        assert all("result" in a and a["result"]["isError"] is False for a in answers), answers
        deadline = time.monotonic() + 15
        while True:
            rows = _ok(platform.get(f"/v1/platforms/{platform_id}/logs", params={"request_type": "mcp", "limit": 100}))
            if rows["total"] == CALLS or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert sorted(r["mcp_free"] for r in rows["data"]) == [False] * (CALLS - FREE) + [True] * FREE
        wallet = _ok(platform.get(f"/v1/platforms/{platform_id}/wallet"))
        assert Decimal(str(wallet["balance_usd"])) == Decimal("1") - (CALLS - FREE) * Decimal("0.01")
        assert wallet["held_usd"] == 0
        assert_invariants(first.settings)
    finally:
        platform.close()
        admin.close()


LOOPS = 6  # responses, each running two MCP calls in Tollway's tool loop (SPEC §16.3)


async def _agents(urls: list[str], key: str) -> list[dict[str, Any]]:
    tool = {"type": "mcp", "server_label": "tools", "require_approval": "never"}
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(i: int) -> dict[str, Any]:
            url = urls[i % len(urls)]
            body = {"model": "agent", "input": "go", "tools": [{**tool, "server_url": f"{url}/v1/mcp/tools"}]}
            async with session.post(f"{url}/v1/responses", json=body) as response:
                assert response.status == 200, await response.text()
                answer: dict[str, Any] = await response.json()
                return answer

        return await asyncio.gather(*(one(i) for i in range(LOOPS)))


def test_concurrent_tool_loops_over_the_instances_get_exactly_the_free_tier(
    instances: list[GatewayProcess], app: McpApp, fake_upstream: FakeUpstreamThread
) -> None:
    first = instances[0]
    admin = httpx.Client(
        base_url=first.url, headers={"Authorization": f"Bearer {first.settings.admin_key}"}, timeout=30
    )
    provider = create_provider(admin, fake_upstream.base_url)
    free_turns = {"input_price_per_mtok": "0", "output_price_per_mtok": "0"}
    create_model(admin, provider["id"], "agent", 'fake/agent?name=tools__echo&args={"text":"x"}&calls=2', **free_turns)
    tenant = create_tenant(admin, first.url, provider["id"], provider["slug"], topup="1")
    platform = tenant.client
    base = f"/v1/platforms/{tenant.platform_id}"
    _ok(platform.patch(base, json={"settings": {"mcp_free_calls_per_month": FREE}}))
    app_body = {"slug": "tools", "name": "Tools", "server_url": app.url, "auth": {"type": "none"}}
    _ok(platform.post(f"{base}/mcp/apps", json={**app_body, "price_per_call_usd": "0.01"}), 201)
    try:
        answers = asyncio.run(_agents([p.url for p in instances], tenant.platform_key))
        assert all(a["status"] == "completed" and a["output"][-1]["type"] == "message" for a in answers), answers
        calls = 2 * LOOPS
        deadline = time.monotonic() + 15
        while True:
            rows = _ok(platform.get(f"{base}/logs", params={"request_type": "mcp", "limit": 100}))
            if rows["total"] == calls or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert sorted(r["mcp_free"] for r in rows["data"]) == [False] * (calls - FREE) + [True] * FREE
        wallet = _ok(platform.get(f"{base}/wallet"))
        assert Decimal(str(wallet["balance_usd"])) == Decimal("1") - (calls - FREE) * Decimal("0.01")
        assert wallet["held_usd"] == 0
        assert_invariants(first.settings)
    finally:
        platform.close()
        admin.close()


# -- a budget or a wallet that covers 50 of 200 concurrent calls (SPEC §16.3, §9) ------------------------------------

RUSH = 200
COVERED = 50
PRICE = Decimal("0.002")  # USD per call; with 15 % markup the end user is charged 0.0023
CHARGE = Decimal("0.0023")


async def _rush(urls: list[str], key: str) -> list[dict[str, Any]]:
    """``RUSH`` concurrent ``tools/call`` requests over the instances, raw JSON-RPC over HTTP (the proxy is
    stateless: no ``initialize`` needed); every answer is a JSON-RPC result or error."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    connector = aiohttp.TCPConnector(limit=RUSH)
    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout, connector=connector) as session:

        async def one(i: int) -> dict[str, Any]:
            body = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "echo", "arguments": {}}}
            async with session.post(urls[i % len(urls)], json=body) as response:
                answer: dict[str, Any] = await response.json(content_type=None)
                assert answer.get("id") == i, answer
                return answer

        return await asyncio.gather(*(one(i) for i in range(RUSH)))


def _settled_rows(platform: httpx.Client, platform_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        rows = _ok(platform.get(f"/v1/platforms/{platform_id}/logs", params={"request_type": "mcp", "limit": 100}))
        if rows["total"] >= count or time.monotonic() > deadline:
            return list(rows["data"])
        time.sleep(0.1)


def _split(answers: list[dict[str, Any]], code: str) -> int:
    """How many answers succeeded; every other one is the refusal ``code`` as a JSON-RPC error carrying §3."""
    ok = [a for a in answers if "result" in a]
    assert all(a["result"]["isError"] is False for a in ok), ok
    refused = [a for a in answers if "error" in a]
    assert len(ok) + len(refused) == RUSH
    assert all(a["error"]["data"]["error"]["code"] == code for a in refused), refused[:3]
    return len(ok)


@pytest.fixture
def rush_platform(instances: list[GatewayProcess], app: McpApp) -> Iterator[tuple[httpx.Client, str, str]]:
    first = instances[0]
    admin = httpx.Client(
        base_url=first.url, headers={"Authorization": f"Bearer {first.settings.admin_key}"}, timeout=30
    )
    settings = {"mcp_free_calls_per_month": 0, "markup_percentage": 15}
    body = {"name": f"Rush {uuid.uuid4().hex[:6]}", "settings": settings}
    created = _ok(admin.post("/v1/admin/platforms", json=body), 201)
    platform_id, key = created["platform"]["id"], created["api_key"]["raw_key"]
    platform = httpx.Client(base_url=first.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    app_body = {"slug": "tools", "name": "Tools", "server_url": app.url, "auth": {"type": "none"}}
    _ok(
        platform.post(f"/v1/platforms/{platform_id}/mcp/apps", json={**app_body, "price_per_call_usd": str(PRICE)}), 201
    )
    try:
        yield platform, platform_id, key
    finally:
        platform.close()
        report = _ok(admin.get("/v1/admin/reconcile"))
        admin.close()
        assert report["ok"] is True, report["differences"]


def test_200_concurrent_calls_against_a_budget_for_50_bill_exactly_50(
    instances: list[GatewayProcess], app: McpApp, rush_platform: tuple[httpx.Client, str, str]
) -> None:
    platform, platform_id, _ = rush_platform
    base = f"/v1/platforms/{platform_id}"
    admin = httpx.Client(
        base_url=instances[0].url, headers={"Authorization": f"Bearer {instances[0].settings.admin_key}"}, timeout=30
    )
    _ok(admin.post(f"/v1/admin/platforms/{platform_id}/wallet/topup", json={"amount_usd": "10"}))
    admin.close()
    user = _ok(platform.post(f"{base}/end-users", json={"external_id": uuid.uuid4().hex}), 201)
    budget = {"max_usd": str(COVERED * CHARGE), "period": "monthly"}
    _ok(platform.post(f"{base}/end-users/{user['id']}/budget", json=budget), 201)
    served = len(app.calls)
    answers = asyncio.run(_rush([f"{p.url}/v1/mcp/tools" for p in instances], user["api_key"]["raw_key"]))
    assert _split(answers, "budget_exhausted") == COVERED
    assert len(app.calls) - served == COVERED  # refusals never reach the app
    rows = _settled_rows(platform, platform_id, COVERED)
    assert len(rows) == COVERED and all(r["status"] == "success" and not r["mcp_free"] for r in rows)
    assert all(Decimal(str(r["charged_usd"])) == CHARGE and Decimal(str(r["cost_usd"])) == PRICE for r in rows)
    used = _ok(platform.get(f"{base}/end-users/{user['id']}/budget"))
    assert Decimal(str(used["used_usd"])) == COVERED * CHARGE
    wallet = _ok(platform.get(f"{base}/wallet"))
    assert Decimal(str(wallet["balance_usd"])) == Decimal("10") - COVERED * PRICE and wallet["held_usd"] == 0
    assert_invariants(instances[0].settings)


def test_200_concurrent_calls_against_a_wallet_for_50_bill_exactly_50(
    instances: list[GatewayProcess], app: McpApp, rush_platform: tuple[httpx.Client, str, str]
) -> None:
    platform, platform_id, key = rush_platform  # the platform key pays the raw price from the wallet
    admin = httpx.Client(
        base_url=instances[0].url, headers={"Authorization": f"Bearer {instances[0].settings.admin_key}"}, timeout=30
    )
    topup = {"amount_usd": str(COVERED * PRICE)}
    _ok(admin.post(f"/v1/admin/platforms/{platform_id}/wallet/topup", json=topup))
    admin.close()
    answers = asyncio.run(_rush([f"{p.url}/v1/mcp/tools" for p in instances], key))
    assert _split(answers, "wallet_insufficient") == COVERED
    rows = _settled_rows(platform, platform_id, COVERED)
    assert len(rows) == COVERED and all(Decimal(str(r["cost_usd"])) == PRICE for r in rows)
    wallet = _ok(platform.get(f"/v1/platforms/{platform_id}/wallet"))
    assert Decimal(str(wallet["balance_usd"])) == 0 and wallet["held_usd"] == 0
    assert_invariants(instances[0].settings)
