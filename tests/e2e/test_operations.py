"""Operations (SPEC §13.4, §9.6): /healthz, /readyz, /metrics after real traffic, and reconcile (HTTP and CLI)
against a deliberately corrupted store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.support.invariants import assert_invariants
from tests.support.processes import gateway_env
from tests.support.seed import Tenant, create_model, create_provider, create_tenant
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.settings import Settings
from tollway.storage.sql.db import create_engine

USER = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def tenant(admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread) -> Iterator[Tenant]:
    provider = create_provider(admin, fake_upstream.base_url)
    create_model(admin, provider["id"], "usage", "fake/usage?in=5&out=6")
    create_model(admin, provider["id"], "bad-request", "fake/error?status=400")
    tenant = create_tenant(admin, gateway.url, provider["id"], provider["slug"])
    yield tenant
    tenant.client.close()


@pytest.fixture(scope="module")
def sdk(gateway: GatewayServer, tenant: Tenant) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=tenant.platform_key, max_retries=0, timeout=30)
    yield client
    client.close()


def samples(gateway: GatewayServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(gateway.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def sql(settings: Settings, statement: str, **params: Any) -> None:
    async def run() -> None:
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.text(statement), params)
        finally:
            await engine.dispose()

    asyncio.run(run())


def wait_settled(tenant: Tenant, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        rows = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/logs", params={"limit": 100}).json()["data"]
        if len(rows) >= count or time.monotonic() > deadline:
            return list(rows)
        time.sleep(0.02)


def test_healthz_and_readyz(gateway: GatewayServer) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "redis": "disabled"}}


def test_metrics_after_traffic(gateway: GatewayServer, sdk: openai.OpenAI, tenant: Tenant) -> None:
    for _ in range(2):
        sdk.chat.completions.create(model="usage", messages=USER)
    chunks = list(sdk.chat.completions.create(model="usage", messages=USER, stream=True))
    assert chunks
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="bad-request", messages=USER)
    assert err.value.code == "upstream_invalid_request"  # the provider's own 400, returned as is (SPEC §14.2)
    assert httpx.get(gateway.url + "/v1/no-such-route").status_code == 404
    tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").raise_for_status()
    wait_settled(tenant, 4)

    found = samples(gateway)
    assert value(found, "tollway_requests_total", route="/v1/chat/completions", status="200") == 3
    assert value(found, "tollway_requests_total", route="/v1/chat/completions", status="400") == 1
    assert value(found, "tollway_requests_total", route="unmatched", status="404") == 1
    assert value(found, "tollway_requests_total", route="/v1/platforms/{pid}/wallet", status="200") == 1
    slug = tenant.provider_slug
    assert value(found, "tollway_upstream_requests_total", provider=slug, model="usage", outcome="success") == 3
    assert value(found, "tollway_upstream_requests_total", provider=slug, model="bad-request", outcome="error") == 1
    # 3 calls × (5 in, 6 out); 5 × $0.15/Mtok + 6 × $0.60/Mtok = 4,350 n$ per call (SPEC §9.2)
    assert value(found, "tollway_tokens_total", model="usage", direction="prompt") == 15
    assert value(found, "tollway_tokens_total", model="usage", direction="completion") == 18
    assert value(found, "tollway_cost_nano_usd_total", model="usage") == 3 * 4350
    assert value(found, "tollway_ttft_seconds_count", model="usage") == 1  # the one stream
    assert value(found, "tollway_added_latency_seconds_count") >= 6
    assert value(found, "tollway_upstream_latency_seconds_count", provider=slug) == 4
    assert value(found, "tollway_holds_active") == 0
    assert value(found, "tollway_uncollected_nano_usd_total") == 0
    assert value(found, "tollway_ratelimit_degraded") == 0
    for name in ("tollway_holds_expired_total", "tollway_ratelimit_local_decisions_total", "tollway_outbox_pending"):
        assert (name, frozenset()) in found
    text = httpx.get(gateway.url + "/metrics").text
    assert tenant.platform_id not in text and tenant.platform_key not in text and "sk-" not in text
    assert_invariants(gateway.settings)


def test_reconcile_clean_then_corrupted(
    gateway: GatewayServer, admin: httpx.Client, sdk: openai.OpenAI, tenant: Tenant
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="usage", messages=USER)
    request_id = raw.headers["x-request-id"]
    wait_settled(tenant, 1)
    clean = admin.get("/v1/admin/reconcile")
    assert clean.status_code == 200
    body = clean.json()
    assert body["ok"] is True and body["differences"] == [] and body["wallets"] >= 1
    assert body["checked_at"].endswith("Z")
    wallet = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()

    sql(gateway.settings, "UPDATE wallets SET balance_nanos = balance_nanos + 1234 WHERE id = :id", id=wallet["id"])
    sql(gateway.settings, "UPDATE usage_logs SET uncollected_nanos = 350 WHERE request_id = :r", r=request_id)
    try:
        report = admin.get("/v1/admin/reconcile").json()
        assert report["ok"] is False
        assert sorted(report["differences"], key=lambda d: d["kind"]) == [
            {"kind": "usage_wallet_row", "id": request_id, "expected_usd": 0.000004, "actual_usd": 0.00000435},
            {
                "kind": "wallet_balance",
                "id": wallet["id"],
                "expected_usd": wallet["balance_usd"],
                "actual_usd": float(f"{wallet['balance_usd'] + 0.000001234:.9f}"),
            },
        ]
        cli = subprocess.run(
            [str(Path(sys.executable).with_name("tollway")), "reconcile"],
            env=gateway_env(gateway.settings),
            capture_output=True,
            timeout=60,
        )
        assert cli.returncode == 1, cli.stderr
        assert httpx.Response(200, content=cli.stdout).json()["differences"] == report["differences"]
    finally:
        sql(gateway.settings, "UPDATE wallets SET balance_nanos = balance_nanos - 1234 WHERE id = :id", id=wallet["id"])
        sql(gateway.settings, "UPDATE usage_logs SET uncollected_nanos = 0 WHERE request_id = :r", r=request_id)
    assert admin.get("/v1/admin/reconcile").json()["ok"] is True
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("tollway")), "reconcile"], env=gateway_env(gateway.settings), timeout=60
    )
    assert cli.returncode == 0


def test_reconcile_needs_the_operator_key(gateway: GatewayServer, tenant: Tenant) -> None:
    assert httpx.get(gateway.url + "/v1/admin/reconcile").status_code == 401
    refused = tenant.client.get("/v1/admin/reconcile")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "wrong_key_type"


def test_readyz_is_503_while_draining(gateway: GatewayServer) -> None:
    """Last in the module: draining cannot be undone. (SIGTERM itself is tested in test_graceful_shutdown.py.)"""
    server = gateway._server
    assert server is not None
    app: Any = server.config.loaded_app
    while not hasattr(app, "_drain"):
        app = app.app
    drain = app._drain
    drain_loop(gateway).call_soon_threadsafe(drain.begin)  # begin() must run on the gateway's own loop
    deadline = time.monotonic() + 5
    while not drain.draining and time.monotonic() < deadline:
        time.sleep(0.01)
    response = httpx.get(gateway.url + "/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert httpx.get(gateway.url + "/healthz").status_code == 200


def drain_loop(gateway: GatewayServer) -> asyncio.AbstractEventLoop:
    server = gateway._server
    assert server is not None and server.servers
    loop: asyncio.AbstractEventLoop = server.servers[0].get_loop()
    return loop
