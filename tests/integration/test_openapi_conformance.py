"""Every answer conforms to the served OpenAPI document (SPEC §18): a scenario walks the operator, platform,
self-service and inference APIs on SQLite and PostgreSQL, successes and §3 errors alike, and an httpx hook checks
each response's status, media type and body against the document. A renderer that drifts from its schema fails
here (and in schemathesis, tests/contract/)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from tests.support.openapi import DocumentChecker
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

NIL = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def checker(gateway: GatewayServer) -> DocumentChecker:
    document = httpx.get(gateway.url + "/openapi.json", timeout=30).json()
    return DocumentChecker(document)


def _client(gateway: GatewayServer, checker: DocumentChecker, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=gateway.url, headers=headers, timeout=30, event_hooks={"response": [checker.hook()]})


@pytest.fixture(scope="module")
def operator(gateway: GatewayServer, checker: DocumentChecker) -> Iterator[httpx.Client]:
    with _client(gateway, checker, gateway.settings.admin_key) as client:
        yield client


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def test_operator_platform_and_self_service_answers_conform(
    gateway: GatewayServer, checker: DocumentChecker, operator: httpx.Client, fake_upstream: FakeUpstreamThread
) -> None:
    slug = f"fake-{uuid.uuid4().hex[:8]}"
    provider = _ok(
        operator.post(
            "/v1/admin/providers",
            json={"slug": slug, "name": "Fake", "kind": "openai_compatible", "base_url": fake_upstream.base_url},
        ),
        201,
    )
    _ok(operator.get(f"/v1/admin/providers/{provider['id']}"))
    _ok(operator.patch(f"/v1/admin/providers/{provider['id']}", json={"name": "Fake 2"}))
    _ok(operator.get("/v1/admin/providers", params={"kind": "openai_compatible", "limit": 5}))
    model = _ok(
        operator.post(
            "/v1/admin/models",
            json={
                "slug": f"conf-{slug}",
                "provider_id": provider["id"],
                "upstream_model": "fake/usage?in=5&out=6",
                "input_price_per_mtok": "0.15",
                "output_price_per_mtok": 0.6,
                "cached_input_price_per_mtok": None,
                "max_output_tokens": 100,
                "price_per_image": "0.04",
            },
        ),
        201,
    )
    _ok(operator.patch(f"/v1/admin/models/{model['id']}", json={"priority": 5, "context_window": 8000}))
    _ok(operator.get("/v1/admin/models", params={"slug": model["slug"]}))
    _ok(operator.get(f"/v1/admin/models/{model['id']}"))
    created = _ok(
        operator.post("/v1/admin/platforms", json={"name": "Conformance", "settings": {"markup_percentage": 12.5}}), 201
    )
    pid = created["platform"]["id"]
    _ok(operator.get(f"/v1/admin/platforms/{pid}"))
    _ok(operator.get("/v1/admin/platforms"))
    _ok(operator.post(f"/v1/admin/platforms/{pid}/api-keys"), 201)
    _ok(
        operator.post(
            f"/v1/admin/platforms/{pid}/wallet/topup",
            json={"amount_usd": "25", "metadata": {"invoice": 7}},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
    )
    _ok(operator.get("/v1/admin/reconcile"))
    # §3 errors conform too.
    assert operator.get(f"/v1/admin/providers/{NIL}").status_code == 404
    assert operator.post("/v1/admin/providers", json={"slug": "x", "name": "n", "kind": "nope"}).status_code == 400
    assert (
        operator.post("/v1/admin/providers", content=b"{", headers={"content-type": "application/json"}).status_code
        == 400
    )
    assert operator.get(f"/v1/platforms/{pid}").status_code == 403

    with _client(gateway, checker, created["api_key"]["raw_key"]) as platform:
        base = f"/v1/platforms/{pid}"
        settings = {"rate_limits": {"rpm": 1000}, "wallet_low_balance_threshold": "1", "default_budget": {"max_usd": 3}}
        _ok(platform.patch(base, json={"settings": settings}))
        _ok(platform.get(base))
        key = _ok(platform.post(f"{base}/api-keys", json={"name": "ci", "scopes": ["inference"]}), 201)
        _ok(platform.get(f"{base}/api-keys"))
        config = _ok(platform.post(f"{base}/llm-configs", json={"provider_id": provider["id"], "api_key": "sk-x"}), 201)
        _ok(platform.patch(f"{base}/llm-configs/{config['id']}", json={"is_default": True}))
        _ok(platform.get(f"{base}/llm-configs/{config['id']}"))
        _ok(platform.get(f"{base}/llm-configs", params={"provider_id": provider["id"]}))
        user = _ok(platform.post(f"{base}/end-users", json={"external_id": "u-1", "metadata": {"plan": "pro"}}), 201)
        again = _ok(platform.post(f"{base}/end-users", json={"external_id": "u-1"}), 200)
        assert again["id"] == user["id"]
        uid = user["id"]
        huge = b'{"external_id": "u-2", "metadata": {"n": 15904859041765890457600}}'  # found by schemathesis
        refused = platform.post(f"{base}/end-users", content=huge, headers={"content-type": "application/json"})
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "metadata.n"
        _ok(platform.get(f"{base}/end-users", params={"external_id": "u-1"}))
        _ok(platform.get(f"{base}/end-users/{uid}"))
        _ok(platform.patch(f"{base}/end-users/{uid}", json={"display_name": "Dana"}))
        _ok(platform.post(f"{base}/end-users/{uid}/api-keys", json={"expires_at": "2099-01-01T00:00:00Z"}), 201)
        budget = f"{base}/end-users/{uid}/budget"
        _ok(platform.get(budget))
        assert platform.post(budget, json={"max_usd": 1}).status_code == 400  # a second budget
        _ok(platform.patch(budget, json={"max_usd": "10", "period": "monthly", "low_balance_threshold": 1}))
        _ok(platform.post(f"{budget}/topup", json={"amount_usd": 2, "reason": "gift"}))
        _ok(platform.post(f"{budget}/debit", json={"amount_usd": "0.5", "reason": "chargeback"}))
        assert platform.post(f"{budget}/debit", json={"amount_usd": 1000, "reason": "too much"}).status_code == 402
        _ok(platform.get(f"{budget}/transactions", params={"type": "topup"}))
        limits = f"{base}/end-users/{uid}/rate-limits"
        assert platform.get(limits).status_code == 404
        _ok(platform.put(limits, json={"rpm_limit": 100, "tpm_limit": None}))
        _ok(platform.get(limits))
        hook = _ok(platform.post(f"{base}/webhooks", json={"url": "http://127.0.0.1:9/hook"}), 201)
        _ok(platform.get(f"{base}/webhooks/{hook['id']}"))
        _ok(platform.patch(f"{base}/webhooks/{hook['id']}", json={"events": ["budget.topped_up"], "is_active": False}))
        _ok(platform.get(f"{base}/webhooks"))
        _ok(platform.post(f"{base}/webhooks/{hook['id']}/rotate-secret"))
        _ok(platform.get(f"{base}/webhooks/{hook['id']}/deliveries"))
        assert platform.post(f"{base}/webhooks/{hook['id']}/deliveries/{NIL}/replay").status_code == 404
        app = _ok(
            platform.post(
                f"{base}/mcp/apps",
                json={
                    "slug": "notes",
                    "name": "Notes",
                    "server_url": "http://127.0.0.1:9/mcp",
                    "auth": {"type": "none"},
                },
            ),
            201,
        )
        _ok(platform.patch(f"{base}/mcp/apps/{app['id']}", json={"allowed_tools": ["search"]}))
        _ok(platform.get(f"{base}/mcp/apps/{app['id']}"))
        _ok(platform.get(f"{base}/mcp/apps"))
        _ok(platform.get(f"{base}/mcp/connections"))
        _ok(platform.get(f"{base}/threads"))
        _ok(platform.get(f"{base}/wallet"))
        _ok(platform.get(f"{base}/wallet/transactions", params={"since": "2020-01-01T00:00:00Z"}))
        assert platform.get(f"{base}/logs", params={"status": "nope"}).status_code == 400
        # Card top-ups are off without Stripe settings (SPEC §17.2): 404, as documented.
        assert platform.post(f"{base}/wallet/checkout", json={"amount_usd": 10}).status_code == 404

        with _client(gateway, checker, again["api_key"]["raw_key"]) as end_user:
            chat = {"model": model["slug"], "messages": [{"role": "user", "content": "hi"}]}
            _ok(end_user.post("/v1/chat/completions", json=chat))
            streamed = end_user.post("/v1/chat/completions", json={**chat, "stream": True})
            assert streamed.headers["content-type"].startswith("text/event-stream")
            _ok(end_user.post("/v1/messages", json={**chat, "max_tokens": 20}))
            response = _ok(end_user.post("/v1/responses", json={"model": model["slug"], "input": "hi"}))
            _ok(end_user.get(f"/v1/responses/{response['id']}"))
            _ok(end_user.delete(f"/v1/responses/{response['id']}"))
            _ok(end_user.post("/v1/images/generations", json={"model": model["slug"], "prompt": "a cat"}))
            _ok(end_user.post("/v1/image/generate", json={"model": model["slug"], "prompt": "a cat"}))
            _ok(end_user.get("/v1/models"))
            _ok(end_user.get(f"/v1/models/{model['slug']}"))
            assert end_user.get("/v1/models/none-such").status_code == 404
            assert end_user.post("/v1/chat/completions", json={**chat, "model": "none-such"}).status_code == 404
            assert end_user.post("/v1/chat/completions", json={**chat, "temperature": 9}).status_code == 400
            assert end_user.post("/v1/messages", json={**chat, "max_tokens": 0}).status_code == 400
            _ok(end_user.get("/v1/threads"))
            assert end_user.get("/v1/threads/none-such").status_code == 404
            _ok(end_user.get("/v1/me/budget"))
            _ok(end_user.get("/v1/me/usage", params={"request_type": "chat.completion"}))
            _ok(end_user.get("/v1/me/rate-limits"))
            _ok(end_user.get("/v1/me/mcp-config"))
            assert end_user.post("/v1/me/mcp/apps/notes/connect").status_code == 400  # auth none needs no connection
            assert end_user.get(f"{base}/wallet").status_code == 403

        _ok(platform.get(f"{base}/logs", params={"end_user_id": uid}))
        _ok(platform.delete(limits), 204)
        _ok(platform.delete(f"{base}/mcp/apps/{app['id']}"), 204)
        _ok(platform.delete(f"{base}/webhooks/{hook['id']}"), 204)
        _ok(platform.delete(f"{base}/api-keys/{key['id']}"), 204)
        _ok(platform.delete(f"{base}/end-users/{uid}"), 204)
        _ok(platform.delete(f"{base}/llm-configs/{config['id']}"), 204)
        _ok(platform.delete(base), 204)
        assert platform.get(base).status_code == 401

    _ok(operator.delete(f"/v1/admin/models/{model['id']}"), 204)
    _ok(operator.delete(f"/v1/admin/providers/{provider['id']}"), 204)
    with _client(gateway, checker, None) as anonymous:
        _ok(anonymous.get("/healthz"))
        _ok(anonymous.get("/readyz"))
        assert anonymous.get("/metrics").status_code == 200
        assert anonymous.get("/v1/admin/providers").status_code == 401
        assert (
            anonymous.post("/v1/stripe/webhook", json={}, headers={"Stripe-Signature": "t=1,v1=x"}).status_code == 404
        )
        assert anonymous.get("/v1/mcp/oauth/callback", params={"state": "forged", "code": "x"}).status_code == 400

    documented = {(method, template) for method, template, _ in checker.checked}
    assert len(documented) >= 80, len(documented)


def test_the_document_and_its_viewer_are_served_without_a_key(gateway: GatewayServer) -> None:
    first = httpx.get(gateway.url + "/openapi.json", timeout=30)
    second = httpx.get(gateway.url + "/openapi.json", timeout=30)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.content == second.content  # built once, then cached bytes
    validate(first.json())
    page = httpx.get(gateway.url + "/docs", timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self';")
    scripts = re.findall(r"<script[^>]*>", page.text)
    assert scripts and all(' src="/docs/assets/' in tag for tag in scripts)  # no inline script
    assert "<style" not in page.text
    for asset in re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', page.text):
        served = httpx.get(gateway.url + asset, timeout=30)
        assert served.status_code == 200, asset
        assert len(served.content) > 100, asset
    init = httpx.get(gateway.url + "/docs/assets/tollway-docs.js", timeout=30).text
    assert '"/openapi.json"' in init
