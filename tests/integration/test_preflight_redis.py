"""SPEC §8's pre-flight order with rate limits in Redis and an end user with a budget: a refused admission wins
over a refused hold and leaves nothing held or charged, a refused hold returns the TPM reservation (through the
batched Redis corrections), and a TPM clamp lowers what the upstream is asked for."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.invariants import assert_invariants, count
from tests.support.redis_server import RedisServer, redis_server_fixture
from tests.support.seed import Tenant, cent_tenant
from tests.support.servers import GatewayServer, running_gateway
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.storage.sql.tables import holds, usage_logs

pytestmark = pytest.mark.redis

# T_p of this body is 32 + 16 + 29 = 77 tokens; with max_tokens 10 the TPM estimate is 87 (SPEC §9.3, §10).
BODY: dict[str, Any] = {"model": "cent", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10}


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    yield from redis_server_fixture()


@pytest.fixture(scope="module")
def shared(redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp = tmp_path_factory.mktemp("preflight-redis")
    with running_gateway(make_settings(tmp, f"sqlite:///{tmp / 'tollway.db'}", redis_url=redis.url)) as server:
        yield server


@pytest.fixture
def tenant(shared: GatewayServer, fake_upstream: FakeUpstreamThread) -> Iterator[Tenant]:
    made = cent_tenant(shared.url, shared.settings.admin_key, fake_upstream.base_url, topup="10")
    yield made
    made.client.close()


def _end_user(tenant: Tenant, limits: dict[str, int], budget_usd: str) -> tuple[str, httpx.Client]:
    base = f"/v1/platforms/{tenant.platform_id}/end-users"
    user = tenant.client.post(base, json={"external_id": f"u-{time.monotonic_ns()}"}).json()
    assert tenant.client.put(f"{base}/{user['id']}/rate-limits", json=limits).status_code == 200
    assert tenant.client.post(f"{base}/{user['id']}/budget", json={"max_usd": budget_usd}).status_code == 201
    client = httpx.Client(base_url=str(tenant.client.base_url), timeout=30)
    client.headers["Authorization"] = f"Bearer {user['api_key']['raw_key']}"
    return user["id"], client


def _budget(tenant: Tenant, user_id: str) -> dict[str, Any]:
    response = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/end-users/{user_id}/budget")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _eventually(condition: Callable[[], bool], failure: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.02)


def _settled(shared: GatewayServer, request_id: str) -> None:
    logged = usage_logs.c.request_id == request_id
    _eventually(lambda: count(shared.settings, usage_logs, logged) > 0, "the call never settled")


def _no_active_hold(shared: GatewayServer, request_id: str) -> bool:
    return count(shared.settings, holds, holds.c.request_id == request_id, holds.c.status == "active") == 0


def test_a_rate_limited_call_holds_nothing_and_wins_over_a_budget_refusal(
    shared: GatewayServer, tenant: Tenant, fake_upstream: FakeUpstreamThread
) -> None:
    # $0.0105 covers one $0.01 call and not one token more: the second is refused by RPM and by the budget at once;
    # 429 comes first (§8).
    user_id, client = _end_user(tenant, {"rpm_limit": 1}, "0.0105")
    with client:
        first = client.post("/v1/chat/completions", json=BODY)
        assert first.status_code == 200, first.text
        calls = fake_upstream.request_count
        second = client.post("/v1/chat/completions", json=BODY)
    assert second.status_code == 429, second.text
    assert second.json()["error"]["code"] == "rate_limit_exceeded"
    assert fake_upstream.request_count == calls
    _settled(shared, first.headers["x-request-id"])
    refused_id = second.headers["x-request-id"]
    _eventually(lambda: _no_active_hold(shared, refused_id), "the refused call's hold was never released", 5)
    assert count(shared.settings, usage_logs, usage_logs.c.request_id == refused_id) == 0
    budget = _budget(tenant, user_id)
    assert budget["used_usd"] == 0.01 and budget["held_usd"] == 0
    wallet = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()
    assert wallet["held_usd"] == 0
    assert_invariants(shared.settings)


def test_a_rate_limited_call_holds_nothing_when_the_budget_could_cover_it(
    shared: GatewayServer, tenant: Tenant
) -> None:
    # The budget could cover the second call, but RPM refuses it first (§8 step 5): nothing may stay held.
    user_id, client = _end_user(tenant, {"rpm_limit": 1}, "1")
    with client:
        assert client.post("/v1/chat/completions", json=BODY).status_code == 200
        refused = client.post("/v1/chat/completions", json=BODY)
    assert refused.status_code == 429, refused.text
    refused_id = refused.headers["x-request-id"]
    _eventually(
        lambda: _budget(tenant, user_id)["held_usd"] == 0 and _no_active_hold(shared, refused_id),
        "the refused call's hold was never released",
        5,
    )
    assert count(shared.settings, usage_logs, usage_logs.c.request_id == refused_id) == 0
    assert _budget(tenant, user_id)["used_usd"] == 0.01
    assert_invariants(shared.settings)


def test_a_budget_refusal_returns_the_tpm_reservation(shared: GatewayServer, tenant: Tenant) -> None:
    # TPM 100: a call reserves 87 and settles at 10. The 402 call's 87 must come back, or the third call (10 + 87
    # + 87 > 100, and 3 tokens of headroom cannot hold the prompt) would be refused.
    user_id, client = _end_user(tenant, {"tpm_limit": 100}, "0.0105")
    with client:
        first = client.post("/v1/chat/completions", json=BODY)
        assert first.status_code == 200, first.text
        _settled(shared, first.headers["x-request-id"])
        refused = client.post("/v1/chat/completions", json=BODY)
        assert refused.status_code == 402, refused.text
        assert refused.json()["error"]["code"] == "budget_exhausted"
        base = f"/v1/platforms/{tenant.platform_id}/end-users/{user_id}/budget"
        assert tenant.client.post(f"{base}/topup", json={"amount_usd": "1"}).status_code == 200
        third = client.post("/v1/chat/completions", json=BODY)
    assert third.status_code == 200, third.text
    assert_invariants(shared.settings)


def test_a_tpm_clamp_still_lowers_what_the_upstream_is_asked_for(
    shared: GatewayServer, tenant: Tenant, fake_upstream: FakeUpstreamThread
) -> None:
    # TPM 90: the first call reserves 87 and settles at 10; the second finds 80 tokens of headroom, 77 of them for
    # the prompt, so its output limit (and its hold) is clamped to 3.
    user_id, client = _end_user(tenant, {"tpm_limit": 90}, "1")
    with client:
        first = client.post("/v1/chat/completions", json=BODY)
        assert first.status_code == 200, first.text
        _settled(shared, first.headers["x-request-id"])
        second = client.post("/v1/chat/completions", json=BODY)
    assert second.status_code == 200, second.text
    assert second.headers["x-tollway-max-tokens-clamped"] == "3"
    assert fake_upstream.requests[-1].body["max_tokens"] == 3
    _settled(shared, second.headers["x-request-id"])
    budget = _budget(tenant, user_id)
    assert budget["held_usd"] == 0 and budget["used_usd"] == 0.02  # the fake reports 10 tokens either way, and the
    # excess over the clamped hold is taken from what is available (§9.4)
    assert_invariants(shared.settings)
