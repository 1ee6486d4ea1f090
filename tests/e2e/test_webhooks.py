"""Webhooks end to end (SPEC §5.8, §11): a running gateway on SQLite and PostgreSQL delivers signed envelopes to a
real local HTTP receiver; signatures are checked with the reference ``standardwebhooks`` package."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import make_settings
from tests.support.invariants import assert_invariants
from tests.support.seed import Tenant, create_model, create_provider, create_tenant
from tests.support.servers import GatewayServer, running_gateway
from tests.support.webhook_receiver import Received, WebhookReceiver
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.workers.webhooks import webhook_session

NIL_ID = "00000000-0000-4000-8000-000000000000"
CENT = {"model": "cent", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10}
ENDPOINT_FIELDS = {
    "id", "platform_id", "url", "events", "description", "is_active", "disabled_reason", "created_at", "updated_at",
}  # fmt: skip
DELIVERY_FIELDS = {
    "id", "endpoint_id", "event_id", "event_type", "webhook_id", "status", "attempts", "next_attempt_at", "created_at",
}  # fmt: skip


@pytest.fixture(scope="module")
def cent_provider(admin: httpx.Client, fake_upstream: FakeUpstreamThread) -> dict[str, Any]:
    provider = create_provider(admin, fake_upstream.base_url)
    # ten completion tokens at $1,000 per Mtok: exactly $0.01 a call
    create_model(
        admin, provider["id"], "cent", "fake/usage?in=0&out=10",
        input_price_per_mtok="0", output_price_per_mtok="1000", max_output_tokens=10,
    )  # fmt: skip
    return provider


@pytest.fixture
def fresh(admin: httpx.Client, gateway: GatewayServer, cent_provider: dict[str, Any]) -> Iterator[Tenant]:
    tenant = create_tenant(admin, gateway.url, cent_provider["id"], cent_provider["slug"], topup="10")
    yield tenant
    tenant.client.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver().start()
    yield hook
    hook.stop()


def _base(tenant: Tenant) -> str:
    return f"/v1/platforms/{tenant.platform_id}/webhooks"


def _endpoint(tenant: Tenant, url: str, **body: Any) -> dict[str, Any]:
    response = tenant.client.post(_base(tenant), json={"url": url, **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _user_with_budget(tenant: Tenant, external_id: str, **budget: Any) -> tuple[str, str, str]:
    created = tenant.client.post(f"/v1/platforms/{tenant.platform_id}/end-users", json={"external_id": external_id})
    assert created.status_code == 201, created.text
    user = created.json()
    url = f"/v1/platforms/{tenant.platform_id}/end-users/{user['id']}/budget"
    made = tenant.client.post(url, json=budget)
    assert made.status_code == 201, made.text
    return user["id"], url, user["api_key"]["raw_key"]


def _verify(secret: str, received: Received) -> dict[str, Any]:
    return dict(Webhook(secret).verify(received.body, received.headers))


def _bad(response: httpx.Response, param: str | None) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert response.json()["error"]["param"] == param


def _deliveries(tenant: Tenant, endpoint_id: str, **params: str) -> list[dict[str, Any]]:
    response = tenant.client.get(f"{_base(tenant)}/{endpoint_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def test_endpoint_api(
    gateway: GatewayServer, fresh: Tenant, admin: httpx.Client, cent_provider: dict[str, Any]
) -> None:
    created = _endpoint(fresh, "https://hooks.example.com/a", description="billing")
    assert set(created) == ENDPOINT_FIELDS | {"secret"}
    assert created["secret"].startswith("whsec_")
    assert created["events"] == [
        "budget.topped_up", "budget.low_balance", "budget.suspended", "budget.unsuspended", "wallet.low_balance",
        "wallet.topped_up",
    ]  # fmt: skip
    assert created["is_active"] is True and created["disabled_reason"] is None
    base = _base(fresh)
    got = fresh.client.get(f"{base}/{created['id']}").json()
    assert set(got) == ENDPOINT_FIELDS and created["secret"] not in str(got)
    assert created["secret"] not in fresh.client.get(base).text
    listing = fresh.client.get(base).json()
    assert listing["total"] == 1 and listing["page"] == 1 and listing["limit"] == 20
    patched = fresh.client.patch(
        f"{base}/{created['id']}", json={"events": ["budget.debited"], "is_active": False, "description": None}
    ).json()
    assert patched["events"] == ["budget.debited"] and patched["description"] is None
    assert patched["is_active"] is False and patched["disabled_reason"] == "manual"
    again = fresh.client.patch(f"{base}/{created['id']}", json={"is_active": True}).json()
    assert again["is_active"] is True and again["disabled_reason"] is None

    _bad(fresh.client.post(base, json={"events": ["budget.debited"]}), "url")
    _bad(fresh.client.post(base, json={"url": "https://x.example", "events": []}), "events")
    _bad(fresh.client.post(base, json={"url": "https://x.example", "events": ["budget.debited", "nope"]}), "events[1]")
    _bad(fresh.client.post(base, json={"url": "https://x.example", "secret": "whsec_x"}), "secret")
    _bad(fresh.client.post(base, json={"url": "https://x.example", "colour": 1}), "colour")
    _bad(fresh.client.post(base, json={"url": "https://u:p@x.example"}), "url")
    _bad(fresh.client.post(base, json={"url": 5}), "url")
    _bad(fresh.client.patch(f"{base}/{created['id']}", json={"is_active": "yes"}), "is_active")
    _bad(fresh.client.get(f"{base}/{created['id']}/deliveries", params={"status": "weird"}), "status")

    # another tenant's ids behave as missing
    other = create_tenant(admin, gateway.url, cent_provider["id"], cent_provider["slug"], topup="0")
    foreign = f"/v1/platforms/{other.platform_id}/webhooks/{created['id']}"
    for method in ("GET", "PATCH", "DELETE"):
        kwargs: dict[str, Any] = {"json": {}} if method == "PATCH" else {}
        assert other.client.request(method, foreign, **kwargs).status_code == 404
    assert other.client.post(f"{foreign}/rotate-secret").status_code == 404
    assert other.client.get(f"{foreign}/deliveries").status_code == 404
    assert other.client.get(f"/v1/platforms/{other.platform_id}/webhooks").json()["total"] == 0
    assert other.client.get(f"/v1/platforms/{fresh.platform_id}/webhooks").status_code == 404
    other.client.close()
    assert fresh.client.get(f"{base}/{NIL_ID}").status_code == 404
    assert fresh.client.get(f"{base}/not-a-uuid").status_code == 404

    assert fresh.client.delete(f"{base}/{created['id']}").status_code == 204
    assert fresh.client.get(f"{base}/{created['id']}").status_code == 404
    assert fresh.client.get(base).json()["total"] == 0


def test_signed_delivery_end_to_end(gateway: GatewayServer, fresh: Tenant, receiver: WebhookReceiver) -> None:
    endpoint = _endpoint(fresh, receiver.url)
    user_id, url, _key = _user_with_budget(fresh, "user-1842", max_usd="5", low_balance_threshold="1")
    started = time.monotonic()
    topped = fresh.client.post(f"{url}/topup", json={"amount_usd": "0.25", "reason": "promo", "metadata": {"c": 1}})
    assert topped.status_code == 200
    got = receiver.wait_for(lambda r: len(r) >= 1)[0]
    assert got.at - started < 2.5  # first attempt within 2 s of commit (plus the round trip)
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["webhook-id"].startswith("msg_") and len(got.headers["webhook-id"]) == 36
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 10
    assert " " not in got.headers["webhook-signature"]
    body = _verify(endpoint["secret"], got)
    txn = topped.json()["transaction"]
    assert body == {
        "event_type": "budget.topped_up",
        "event_id": f"{txn['id']}:budget.topped_up",
        "api_version": "2026-05-01",
        "created_at": body["created_at"],
        "data": {
            "platform_id": fresh.platform_id, "end_user_id": user_id, "external_id": "user-1842",
            "budget_id": topped.json()["budget"]["id"], "transaction_id": txn["id"], "type": "topup",
            "amount_usd": 0.25, "max_usd_after": 5.25, "used_usd_after": 0, "remaining_usd_after": 5.25,
            "threshold_usd": 1, "reason": "promo", "metadata": {"c": 1}, "request_id": None,
        },
    }  # fmt: skip
    assert body["created_at"].endswith("Z")
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=").verify(got.body, got.headers)

    # a debit is opt-in: nothing arrives for it on the default subscription
    assert fresh.client.post(f"{url}/debit", json={"amount_usd": "0.1", "reason": "x"}).status_code == 200
    time.sleep(1.5)
    assert len(receiver.received) == 1
    deadline = time.monotonic() + 5
    deliveries = _deliveries(fresh, endpoint["id"])
    while deliveries[0]["status"] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.05)
        deliveries = _deliveries(fresh, endpoint["id"])
    assert len(deliveries) == 1
    delivery = deliveries[0]
    assert set(delivery) == DELIVERY_FIELDS
    assert delivery["status"] == "succeeded" and delivery["next_attempt_at"] is None
    assert delivery["webhook_id"] == got.headers["webhook-id"]
    assert delivery["event_id"] == f"{txn['id']}:budget.topped_up"
    (attempt,) = delivery["attempts"]
    assert set(attempt) == {
        "attempt",
        "attempted_at",
        "response_status",
        "response_body_excerpt",
        "duration_ms",
        "error",
    }
    assert attempt["attempt"] == 1 and attempt["response_status"] == 200 and attempt["error"] is None
    assert len(attempt["response_body_excerpt"].encode()) <= 1024
    assert "sk-live" not in attempt["response_body_excerpt"] and "[redacted]" in attempt["response_body_excerpt"]
    assert _deliveries(fresh, endpoint["id"], status="pending") == []
    assert len(_deliveries(fresh, endpoint["id"], status="succeeded")) == 1


def test_no_event_for_a_refused_debit_or_an_idempotent_replay(
    gateway: GatewayServer, fresh: Tenant, receiver: WebhookReceiver
) -> None:
    endpoint = _endpoint(fresh, receiver.url, events=["budget.debited", "budget.topped_up", "budget.low_balance"])
    _, url, _key = _user_with_budget(fresh, "refused", max_usd="1", low_balance_threshold="0.5")
    refused = fresh.client.post(f"{url}/debit", json={"amount_usd": "2", "reason": "too much"})
    assert refused.status_code == 402
    headers = {"Idempotency-Key": "topup-once"}
    first = fresh.client.post(f"{url}/topup", json={"amount_usd": "1"}, headers=headers)
    replayed = fresh.client.post(f"{url}/topup", json={"amount_usd": "1"}, headers=headers)
    assert first.status_code == replayed.status_code == 200
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    receiver.wait_for(lambda r: len(r) >= 1)
    time.sleep(1.5)
    assert [r.json()["event_type"] for r in receiver.received] == ["budget.topped_up"]
    assert len(_deliveries(fresh, endpoint["id"])) == 1


def _chat(gateway: GatewayServer, key: str) -> int:
    response = httpx.post(
        gateway.url + "/v1/chat/completions", json=CENT, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return response.status_code


def test_low_balance_fires_once_per_crossing_under_concurrent_inference(
    gateway: GatewayServer, admin: httpx.Client, cent_provider: dict[str, Any], receiver: WebhookReceiver
) -> None:
    tenant = create_tenant(admin, gateway.url, cent_provider["id"], cent_provider["slug"], topup="0.1")
    patched = tenant.client.patch(
        f"/v1/platforms/{tenant.platform_id}", json={"settings": {"wallet_low_balance_threshold": "0.045"}}
    )
    assert patched.status_code == 200
    _endpoint(tenant, receiver.url, events=["budget.low_balance", "budget.debited", "wallet.low_balance"])
    user_id, url, key = _user_with_budget(tenant, "busy", max_usd="0.2", low_balance_threshold="0.145")

    def burst(n: int) -> None:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert list(pool.map(lambda _: _chat(gateway, key), range(n))) == [200] * n

    burst(8)  # budget 0.20 -> 0.12 (crosses 0.145 once), wallet 0.10 -> 0.02 (crosses 0.045 once)
    receiver.wait_for(lambda r: sum(1 for x in r if x.json()["event_type"] == "budget.debited") >= 8)
    time.sleep(1.0)
    budget_low = receiver.of_type("budget.low_balance")
    wallet_low = receiver.of_type("wallet.low_balance")
    assert len(budget_low) == 1 and len(wallet_low) == 1
    low = budget_low[0].json()["data"]
    assert low["type"] == "inference" and low["threshold_usd"] == 0.145 and low["end_user_id"] == user_id
    assert low["external_id"] == "busy" and low["amount_usd"] == -0.01 and low["request_id"].startswith("req_")
    assert 0.135 <= low["remaining_usd_after"] <= 0.145
    wallet = wallet_low[0].json()["data"]
    assert set(wallet) == {
        "platform_id", "wallet_id", "transaction_id", "type", "amount_usd", "balance_usd_after", "threshold_usd",
        "request_id",
    }  # fmt: skip
    assert wallet["type"] == "usage" and wallet["threshold_usd"] == 0.045 and wallet["balance_usd_after"] == 0.04
    debited = receiver.of_type("budget.debited")
    assert len({r.headers["webhook-id"] for r in debited}) == 8
    assert sorted(r.json()["data"]["remaining_usd_after"] for r in debited) == [
        0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19,
    ]  # fmt: skip

    # topups that leave the balances above the thresholds re-arm both; the next crossing fires once more
    assert tenant.client.post(f"{url}/topup", json={"amount_usd": "0.1"}).status_code == 200
    wallet_topup = admin.post(f"/v1/admin/platforms/{tenant.platform_id}/wallet/topup", json={"amount_usd": "0.1"})
    assert wallet_topup.status_code == 200
    burst(8)  # budget 0.22 -> 0.14, wallet 0.12 -> 0.04
    receiver.wait_for(lambda r: sum(1 for x in r if x.json()["event_type"] == "budget.debited") >= 16)
    time.sleep(1.0)
    assert len(receiver.of_type("budget.low_balance")) == 2
    assert len(receiver.of_type("wallet.low_balance")) == 2
    assert_invariants(gateway.settings)
    tenant.client.close()


def test_rotation_signs_with_both_secrets(gateway: GatewayServer, fresh: Tenant, receiver: WebhookReceiver) -> None:
    endpoint = _endpoint(fresh, receiver.url)
    _, url, _key = _user_with_budget(fresh, "rotating", max_usd="1")
    rotated = fresh.client.post(f"{_base(fresh)}/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200
    body = rotated.json()
    assert set(body) == {"secret", "previous_secret_expires_at"}
    assert body["secret"].startswith("whsec_") and body["secret"] != endpoint["secret"]
    assert body["secret"] not in fresh.client.get(f"{_base(fresh)}/{endpoint['id']}").text
    assert fresh.client.post(f"{url}/topup", json={"amount_usd": "1"}).status_code == 200
    got = receiver.wait_for(lambda r: len(r) >= 1)[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    _verify(body["secret"], got)
    _verify(endpoint["secret"], got)


def test_gone_disables_the_endpoint_and_replay(
    gateway: GatewayServer, fresh: Tenant, receiver: WebhookReceiver
) -> None:
    endpoint = _endpoint(fresh, receiver.url)
    base = f"{_base(fresh)}/{endpoint['id']}"
    _, url, _key = _user_with_budget(fresh, "replay", max_usd="1")
    assert fresh.client.post(f"{url}/topup", json={"amount_usd": "1"}).status_code == 200
    first = receiver.wait_for(lambda r: len(r) >= 1)[0]
    time.sleep(0.3)
    (delivery,) = _deliveries(fresh, endpoint["id"])
    replay = fresh.client.post(f"{base}/deliveries/{delivery['id']}/replay")
    assert replay.status_code == 202, replay.text
    new = replay.json()
    assert new["id"] != delivery["id"] and new["status"] == "pending" and new["attempts"] == []
    assert new["webhook_id"] == delivery["webhook_id"] and new["event_id"] == delivery["event_id"]
    again = receiver.wait_for(lambda r: len(r) >= 2)[1]
    assert again.headers["webhook-id"] == first.headers["webhook-id"] and again.body == first.body
    _verify(endpoint["secret"], again)
    assert fresh.client.post(f"{base}/deliveries/{NIL_ID}/replay").status_code == 404

    receiver.statuses = [410]
    assert fresh.client.post(f"{url}/topup", json={"amount_usd": "1"}).status_code == 200
    receiver.wait_for(lambda r: len(r) >= 3)
    deadline = time.monotonic() + 5
    state = fresh.client.get(base).json()
    while state["is_active"] and time.monotonic() < deadline:
        time.sleep(0.05)
        state = fresh.client.get(base).json()
    assert state["is_active"] is False and state["disabled_reason"] == "gone"
    time.sleep(0.3)
    failed = _deliveries(fresh, endpoint["id"], status="failed")
    assert len(failed) == 1 and failed[0]["attempts"][0]["response_status"] == 410
    # a disabled endpoint gets no new deliveries and refuses replays
    assert fresh.client.post(f"{url}/topup", json={"amount_usd": "1"}).status_code == 200
    assert len(_deliveries(fresh, endpoint["id"])) == 3
    _bad(fresh.client.post(f"{base}/deliveries/{delivery['id']}/replay"), None)


def test_private_urls_refused_when_not_allowed(tmp_path: Path, receiver: WebhookReceiver) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'strict.db'}", allow_private_urls=False)
    with running_gateway(settings) as strict:
        with httpx.Client(base_url=strict.url, headers={"Authorization": f"Bearer {settings.admin_key}"}) as admin:
            created = admin.post("/v1/admin/platforms", json={"name": "Strict"}).json()
        platform_key = created["api_key"]["raw_key"]
        client = httpx.Client(base_url=strict.url, headers={"Authorization": f"Bearer {platform_key}"})
        base = f"/v1/platforms/{created['platform']['id']}/webhooks"
        for url in (
            receiver.url,  # http
            "https://127.0.0.1/hook",
            "https://localhost/hook",
            "https://10.1.2.3/hook",
            "https://[::ffff:192.168.0.1]/hook",
            "https://169.254.169.254/latest",
            "https://100.64.0.1/hook",
        ):
            _bad(client.post(base, json={"url": url}), "url")
        made = client.post(base, json={"url": "https://8.8.8.8/hook"})
        assert made.status_code == 201, made.text
        _bad(client.patch(f"{base}/{made.json()['id']}", json={"url": "https://[fe80::1]/hook"}), "url")
        client.close()


async def test_connection_time_guard_refuses_the_dialled_address(receiver: WebhookReceiver) -> None:
    """The address actually dialled is checked too (a name that resolves to a private address, DNS rebinding)."""
    async with webhook_session(allow_private=False) as session:
        for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
            with pytest.raises(aiohttp.ClientConnectorError) as refused:
                await session.post(url, data=b"{}")
            assert "non-public" in str(refused.value.os_error)
    async with (
        webhook_session(allow_private=True) as session,
        session.post(receiver.url, data=orjson.dumps({})) as response,
    ):
        assert response.status == 200
    assert len(receiver.received) == 1
