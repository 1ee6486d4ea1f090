"""Hold, then settle (SPEC §9.3, §9.4, §7.3): clamping, client disconnects billed once, and kill -9 recovery."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import STORES, database_url_for, make_settings
from tests.support.invariants import assert_invariants, count
from tests.support.processes import GatewayProcess
from tests.support.seed import Tenant, create_model, create_provider, create_tenant
from tests.support.servers import GatewayServer, free_port
from tollway.domain.clock import utcnow
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.settings import Settings
from tollway.storage.money.writer import MoneyWriter
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.holds import ExpiredHoldStore
from tollway.storage.sql.tables import holds, usage_logs
from tollway.workers.sweeper import HoldSweeper

USER = [{"role": "user", "content": "x"}]


def _rows(tenant: Tenant, request_id: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        data = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/logs", params={"limit": 100}).json()["data"]
        found = [r for r in data if r["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


@pytest.fixture(scope="module")
def priced(admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread) -> dict[str, str]:
    provider = create_provider(admin, fake_upstream.base_url)
    # $1,000 per Mtok out, input free: each output token is exactly $0.001
    for slug, upstream in (("milli", "fake/words?n=200"), ("slow-words", "fake/words?n=400&delay_ms=20")):
        create_model(
            admin,
            provider["id"],
            slug,
            upstream,
            input_price_per_mtok="0",
            output_price_per_mtok="1000",
            max_output_tokens=1000,
        )
    return {"id": provider["id"], "slug": provider["slug"]}


def test_output_limit_is_clamped_to_what_the_wallet_affords(
    admin: httpx.Client, gateway: GatewayServer, priced: dict[str, str], fake_upstream: FakeUpstreamThread
) -> None:
    tenant = create_tenant(admin, gateway.url, priced["id"], priced["slug"], topup="0.005")
    response = tenant.client.post("/v1/chat/completions", json={"model": "milli", "messages": USER, "max_tokens": 10})
    assert response.status_code == 200, response.text
    assert response.headers["x-tollway-max-tokens-clamped"] == "5"
    assert fake_upstream.requests[-1].body["max_tokens"] == 5
    assert response.json()["usage"]["completion_tokens"] == 5
    rows = _rows(tenant, response.headers["x-request-id"])
    assert rows[0]["cost_usd"] == 0.005
    # nothing left for even one token: refused before any upstream call
    before = fake_upstream.request_count
    time.sleep(0.05)
    refused = tenant.client.post("/v1/chat/completions", json={"model": "milli", "messages": USER, "max_tokens": 10})
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "wallet_insufficient"
    assert fake_upstream.request_count == before
    assert_invariants(gateway.settings)
    tenant.client.close()


def test_client_disconnect_is_billed_once_for_what_was_delivered(
    admin: httpx.Client, gateway: GatewayServer, priced: dict[str, str]
) -> None:
    tenant = create_tenant(admin, gateway.url, priced["id"], priced["slug"], topup="10")
    body = {"model": "slow-words", "messages": USER, "stream": True, "max_tokens": 1000}
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {tenant.platform_key}"},
        timeout=30,
    ) as response:
        request_id = response.headers["x-request-id"]
        received = 0
        for line in response.iter_lines():
            if line.startswith("data: {"):
                received += 1
            if received == 6:
                break  # leaving the block closes the connection mid-stream
    started = time.monotonic()
    rows = _rows(tenant, request_id)
    assert time.monotonic() - started < 3
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "interrupted" and row["finish_reason"] == "stop"
    assert row["token_count_method"] == "estimated"
    assert 4 <= row["completion_tokens"] < 400  # "w1 w2 w3 w4 w5" and more: ⌈bytes / 4⌉
    assert row["cost_usd"] > 0
    usage_rows = tenant.client.get(
        f"/v1/platforms/{tenant.platform_id}/wallet/transactions", params={"type": "usage"}
    ).json()
    assert usage_rows["total"] == 1
    assert usage_rows["data"][0]["amount_usd"] == -row["cost_usd"]
    assert_invariants(gateway.settings)
    tenant.client.close()


@pytest.fixture(params=STORES)
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = database_url_for(request.param, tmp_path, request)
    return make_settings(tmp_path, url, port=free_port(), total_timeout_s=30)


async def _sweep(settings: Settings, seconds_ahead: float) -> int:
    engine = create_engine(settings)
    writer = MoneyWriter(settings, engine)
    sweeper = HoldSweeper(ExpiredHoldStore(engine), writer)
    writer.start()
    try:
        return await sweeper.sweep_once(utcnow() + timedelta(seconds=seconds_ahead))
    finally:
        await writer.stop()
        await engine.dispose()


def _open_stream(url: str, key: str, model: str) -> socket.socket:
    """A raw streaming request left open (the client never reads): its hold stays active."""
    host, port = url.removeprefix("http://").split(":")
    payload = orjson.dumps({"model": model, "messages": USER, "stream": True, "max_tokens": 1000})
    sock = socket.create_connection((host, int(port)))
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    sock.sendall(head + payload)
    return sock


def test_kill_minus_nine_with_holds_in_flight(store_settings: Settings, fake_upstream: FakeUpstreamThread) -> None:
    first = GatewayProcess(store_settings)
    sockets: list[socket.socket] = []
    try:
        with httpx.Client(
            base_url=first.url, headers={"Authorization": f"Bearer {store_settings.admin_key}"}, timeout=30
        ) as admin:
            provider = create_provider(admin, fake_upstream.base_url)
            create_model(admin, provider["id"], "slow", "fake/slow?ms=60000", max_output_tokens=100)
            create_model(admin, provider["id"], "dribble", "fake/words?n=2000&delay_ms=50", max_output_tokens=5000)
            tenant = create_tenant(admin, first.url, provider["id"], provider["slug"], topup="5")
        # three calls still waiting for their first byte, two streaming long enough to leave a checkpoint
        sockets = [_open_stream(first.url, tenant.platform_key, "slow") for _ in range(3)]
        sockets += [_open_stream(first.url, tenant.platform_key, "dribble") for _ in range(2)]
        deadline = time.monotonic() + 20
        while count(store_settings, holds, holds.c.checkpoint.is_not(None)) < 2:
            assert time.monotonic() < deadline, "streams never checkpointed"
            time.sleep(0.2)
        assert count(store_settings, holds, holds.c.status == "active") == 5
        first.kill()
    finally:
        for sock in sockets:
            sock.close()
        first.stop()
    tenant.client.close()
    assert_invariants(store_settings)  # holds still active and accounted for after the crash

    # The restarted instance adopts the dead one's journal: the two streams are settled at once from the checkpoint
    # records written ahead of their bytes; the three calls that never got a byte are left to the sweeper.
    restarted = GatewayProcess(store_settings.model_copy(update={"port": free_port()}))
    try:
        _wait_count(store_settings, 2, usage_logs.c.status == "interrupted")
        assert asyncio.run(_sweep(store_settings, 0)) == 0  # nothing has expired yet
        assert asyncio.run(_sweep(store_settings, store_settings.total_timeout_s + 61)) == 3
    finally:
        restarted.stop()
    assert count(store_settings, holds, holds.c.status == "active") == 0
    assert count(store_settings, holds, holds.c.status == "expired") == 3
    assert count(store_settings, holds, holds.c.status == "captured") == 2
    assert count(store_settings, usage_logs, usage_logs.c.error_code == "hold_expired") == 3
    assert count(store_settings, usage_logs, usage_logs.c.status == "interrupted", usage_logs.c.cost_nanos > 0) == 2
    assert_invariants(store_settings)
    assert asyncio.run(_sweep(store_settings, 10_000)) == 0  # each hold is handled once


def _wait_count(settings: Settings, expected: int, *where: Any) -> None:
    deadline = time.monotonic() + 20
    while count(settings, usage_logs, *where) < expected:
        assert time.monotonic() < deadline, f"never {expected} usage rows where {where}"
        time.sleep(0.1)


def test_a_young_stream_is_billed_after_kill_minus_nine(
    store_settings: Settings, fake_upstream: FakeUpstreamThread
) -> None:
    """The first checkpoint is written when the first content byte reaches the client (SPEC §9.4), so a stream
    whose instance dies long before the next 5 s checkpoint is settled ``interrupted`` for what it delivered,
    never released at $0 (here by the sweeper, from the checkpoint on the hold; the journal is not adopted)."""
    first = GatewayProcess(store_settings)
    sockets: list[socket.socket] = []
    try:
        with httpx.Client(
            base_url=first.url, headers={"Authorization": f"Bearer {store_settings.admin_key}"}, timeout=30
        ) as admin:
            provider = create_provider(admin, fake_upstream.base_url)
            create_model(admin, provider["id"], "dribble", "fake/words?n=2000&delay_ms=50", max_output_tokens=5000)
            tenant = create_tenant(admin, first.url, provider["id"], provider["slug"], topup="5")
        started = time.monotonic()
        sockets = [_open_stream(first.url, tenant.platform_key, "dribble")]
        while count(store_settings, holds, holds.c.checkpoint.is_not(None)) < 1:
            assert time.monotonic() - started < 4, "no checkpoint before the first periodic one would be due"
            time.sleep(0.05)
        first.kill()
    finally:
        for sock in sockets:
            sock.close()
        first.stop()
    tenant.client.close()
    elsewhere = store_settings.model_copy(update={"data_dir": store_settings.data_dir / "sweeper"})
    assert asyncio.run(_sweep(elsewhere, store_settings.total_timeout_s + 61)) == 1
    assert count(store_settings, holds, holds.c.status == "captured") == 1
    assert count(store_settings, usage_logs, usage_logs.c.status == "interrupted", usage_logs.c.cost_nanos > 0) == 1
    assert count(store_settings, usage_logs, usage_logs.c.error_code == "hold_expired") == 0
    assert_invariants(store_settings)
