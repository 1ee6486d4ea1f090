"""End-user inference money (SPEC §8 steps 6-8, §9.2-9.4): budget and wallet holds in one step, which one binds,
markup on the charge, suspension, and the $5 budget across two gateway processes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.integration.test_money_concurrency import _fire, settled
from tests.support.invariants import assert_invariants
from tests.support.processes import GatewayProcess
from tests.support.seed import cent_tenant, create_cent_model, create_end_user, create_provider, create_tenant
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

USER = [{"role": "user", "content": "x"}]
CENT = {"model": "cent", "messages": USER, "max_tokens": 10}


def _chat(gateway: GatewayServer, key: str, body: dict[str, Any] = CENT) -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


@pytest.fixture(scope="module")
def cent_provider(admin: httpx.Client, fake_upstream: FakeUpstreamThread) -> dict[str, Any]:
    provider = create_provider(admin, fake_upstream.base_url)
    create_cent_model(admin, provider["id"])  # exactly $0.01 a call, the worst case too
    return provider


def test_markup_charged_to_budget_raw_cost_to_wallet(
    gateway: GatewayServer, admin: httpx.Client, cent_provider: dict[str, Any]
) -> None:
    tenant = create_tenant(admin, gateway.url, cent_provider["id"], cent_provider["slug"], topup="1")
    assert (
        tenant.client.patch(
            f"/v1/platforms/{tenant.platform_id}", json={"settings": {"markup_percentage": 15}}
        ).status_code
        == 200
    )
    time.sleep(1.0)  # settings apply to requests admitted ≥ 1 s later
    user_id, key = create_end_user(tenant, "1", "markup")
    response = _chat(gateway, key)
    assert response.status_code == 200, response.text
    me = httpx.get(gateway.url + "/v1/me/budget", headers={"Authorization": f"Bearer {key}"}).json()
    deadline = time.monotonic() + 5
    while me["used_usd"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
        me = httpx.get(gateway.url + "/v1/me/budget", headers={"Authorization": f"Bearer {key}"}).json()
    assert me["used_usd"] == 0.0115
    wallet = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()
    assert wallet["balance_usd"] == 0.99
    logs = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/logs", params={"end_user_id": user_id}).json()
    assert logs["data"][0]["cost_usd"] == 0.01 and logs["data"][0]["charged_usd"] == 0.0115
    assert_invariants(gateway.settings)
    tenant.client.close()


def test_budget_binds_before_wallet_and_wallet_before_budget(
    gateway: GatewayServer, admin: httpx.Client, cent_provider: dict[str, Any], fake_upstream: FakeUpstreamThread
) -> None:
    rich = create_tenant(admin, gateway.url, cent_provider["id"], cent_provider["slug"], topup="10")
    _, small_budget = create_end_user(rich, "0.005", "small-budget")
    before = fake_upstream.request_count
    refused = _chat(gateway, small_budget)
    assert refused.status_code == 200  # clamped: $0.005 affords 5 of the 10 tokens
    assert refused.headers["x-tollway-max-tokens-clamped"] == "5"
    _, empty_budget = create_end_user(rich, "0", "empty-budget")
    refused = _chat(gateway, empty_budget)
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "budget_exhausted"

    poor = create_tenant(
        admin, gateway.url, cent_provider["id"], cent_provider["slug"], topup="0.0005"
    )  # less than one token
    _, big_budget = create_end_user(poor, "100", "big-budget")
    refused = _chat(gateway, big_budget)
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "wallet_insufficient"
    # both fail: the budget's refusal wins (§8)
    _, none_left = create_end_user(poor, "0", "both-empty")
    refused = _chat(gateway, none_left)
    assert refused.json()["error"]["code"] == "budget_exhausted"
    assert fake_upstream.request_count - before == 1
    assert_invariants(gateway.settings)
    rich.client.close()
    poor.client.close()


def test_suspended_budget_is_402_and_no_budget_means_wallet_only(
    gateway: GatewayServer, admin: httpx.Client, cent_provider: dict[str, Any]
) -> None:
    tenant = create_tenant(admin, gateway.url, cent_provider["id"], cent_provider["slug"], topup="1")
    user_id, key = create_end_user(tenant, "1", "suspended")
    patched = tenant.client.patch(
        f"/v1/platforms/{tenant.platform_id}/end-users/{user_id}/budget", json={"is_suspended": True}
    )
    assert patched.status_code == 200, patched.text
    refused = _chat(gateway, key)
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "budget_suspended"
    _, free_key = create_end_user(tenant, None, "no-budget")
    assert _chat(gateway, free_key).status_code == 200
    tenant.client.close()


def test_thousand_cent_calls_against_a_five_dollar_budget(
    instances: list[GatewayProcess], fake_upstream: FakeUpstreamThread
) -> None:
    first = instances[0]
    tenant = cent_tenant(first.url, first.settings.admin_key, fake_upstream.base_url, topup="100")
    user_id, key = create_end_user(tenant, "5", "five-dollars")
    before = fake_upstream.request_count

    results = asyncio.run(_fire([p.url for p in instances], key, 1000))

    counts = Counter(status for status, _ in results)
    assert counts == {200: 500, 402: 500}, counts
    assert {code for status, code in results if status == 402} == {"budget_exhausted"}
    assert fake_upstream.request_count - before == 500
    budget = settled(lambda: tenant.client.get(f"/v1/platforms/{tenant.platform_id}/end-users/{user_id}/budget").json())
    assert budget["used_usd"] == 5 and budget["remaining_usd"] == 0 and budget["held_usd"] == 0
    assert tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()["balance_usd"] == 95
    assert_invariants(first.settings)
    tenant.client.close()


def test_every_management_change_reaches_the_next_call_at_once(
    gateway: GatewayServer, admin: httpx.Client, cent_provider: dict[str, Any]
) -> None:
    """The money writer keeps the rows it committed (embedded mode) while no other connection writes: topups,
    budget changes, suspension and a new budget must each be seen by the very next call."""
    tenant = create_tenant(admin, gateway.url, cent_provider["id"], cent_provider["slug"], topup="0.01")
    base = f"/v1/platforms/{tenant.platform_id}/end-users"
    user_id, key = create_end_user(tenant, None, "changes")
    assert _chat(gateway, key).status_code == 200  # the wallet's one cent
    assert _chat(gateway, key).json()["error"]["code"] == "wallet_insufficient"
    topup = admin.post(f"/v1/admin/platforms/{tenant.platform_id}/wallet/topup", json={"amount_usd": "0.05"})
    assert topup.status_code == 200, topup.text
    assert _chat(gateway, key).status_code == 200  # the topup is seen at once
    created = tenant.client.post(f"{base}/{user_id}/budget", json={"max_usd": "0.01"})
    assert created.status_code == 201, created.text
    assert _chat(gateway, key).status_code == 200  # the new budget's one cent
    assert _chat(gateway, key).json()["error"]["code"] == "budget_exhausted"
    assert tenant.client.patch(f"{base}/{user_id}/budget", json={"max_usd": "0.02"}).status_code == 200
    assert tenant.client.patch(f"{base}/{user_id}/budget", json={"is_suspended": True}).status_code == 200
    assert _chat(gateway, key).json()["error"]["code"] == "budget_suspended"
    assert tenant.client.patch(f"{base}/{user_id}/budget", json={"is_suspended": False}).status_code == 200
    assert _chat(gateway, key).status_code == 200  # the raised maximum
    assert_invariants(gateway.settings)
    tenant.client.close()
