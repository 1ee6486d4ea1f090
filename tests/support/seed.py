"""Seeding through the real operator and platform APIs: a provider pointing at the fake upstream, priced models,
a platform with a funded wallet and an LLM config. Returns what tests need to call inference."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

FAKE_PROVIDER_KEY = "sk-fakeprovider-" + "Z" * 24


@dataclass(frozen=True)
class Tenant:
    platform_id: str
    platform_key: str
    provider_id: str
    provider_slug: str
    client: httpx.Client  # authenticated with the platform key


def _ok(response: httpx.Response, status: int = 201) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def create_provider(admin: httpx.Client, base_url: str, kind: str = "openai_compatible") -> dict[str, Any]:
    slug = f"fake-{uuid.uuid4().hex[:10]}"
    return _ok(
        admin.post("/v1/admin/providers", json={"slug": slug, "name": "Fake", "kind": kind, "base_url": base_url})
    )


def create_model(admin: httpx.Client, provider_id: str, slug: str, upstream: str, **extra: Any) -> dict[str, Any]:
    body = {
        "slug": slug,
        "provider_id": provider_id,
        "upstream_model": upstream,
        "input_price_per_mtok": "0.15",
        "output_price_per_mtok": "0.6",
        "max_output_tokens": 1000,
        **extra,
    }
    return _ok(admin.post("/v1/admin/models", json=body))


def cent_tenant(process_url: str, admin_key: str | None, upstream_url: str, topup: str) -> Tenant:
    """A tenant whose model ``cent`` costs exactly $0.01 a call (10 completion tokens at $1,000 per Mtok, input
    free), worst case included: money tests can then count calls in cents."""
    with httpx.Client(base_url=process_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30) as admin:
        provider = create_provider(admin, upstream_url)
        create_cent_model(admin, provider["id"])
        return create_tenant(admin, process_url, provider["id"], provider["slug"], topup=topup)


def create_cent_model(admin: httpx.Client, provider_id: str) -> dict[str, Any]:
    """The model ``cent``: 10 completion tokens at $1,000 per Mtok, input free: exactly $0.01 a call."""
    return create_model(
        admin,
        provider_id,
        "cent",
        "fake/usage?in=0&out=10",
        input_price_per_mtok="0",
        output_price_per_mtok="1000",
        max_output_tokens=10,
    )


def create_tenant(
    admin: httpx.Client, gateway_url: str, provider_id: str, provider_slug: str, topup: str = "10"
) -> Tenant:
    created = _ok(admin.post("/v1/admin/platforms", json={"name": f"Acme {uuid.uuid4().hex[:6]}"}))
    platform_id = created["platform"]["id"]
    key = created["api_key"]["raw_key"]
    client = httpx.Client(base_url=gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    _ok(
        client.post(
            f"/v1/platforms/{platform_id}/llm-configs", json={"provider_id": provider_id, "api_key": FAKE_PROVIDER_KEY}
        )
    )
    if topup != "0":
        _ok(admin.post(f"/v1/admin/platforms/{platform_id}/wallet/topup", json={"amount_usd": topup}), 200)
    return Tenant(platform_id, key, provider_id, provider_slug, client)


def add_config(tenant: Tenant, provider_id: str) -> None:
    """The tenant's LLM config for one more provider (the fake upstream accepts FAKE_PROVIDER_KEY)."""
    body = {"provider_id": provider_id, "api_key": FAKE_PROVIDER_KEY}
    _ok(tenant.client.post(f"/v1/platforms/{tenant.platform_id}/llm-configs", json=body))


def logs_for(tenant: Tenant, request_id: str, expected: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The usage-log rows of one request, once ``expected`` of them are committed (group commit, bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/logs", params={"limit": 100}).json()["data"]
        found = [r for r in rows if r["request_id"] == request_id]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def create_end_user(tenant: Tenant, budget_usd: str | None = None, external_id: str | None = None) -> tuple[str, str]:
    """A new end user of the tenant (id, raw key), with an active budget of ``budget_usd`` when one is given."""
    body = {"external_id": external_id or f"eu-{uuid.uuid4().hex[:8]}"}
    user = _ok(tenant.client.post(f"/v1/platforms/{tenant.platform_id}/end-users", json=body))
    if budget_usd is not None:
        _ok(
            tenant.client.post(
                f"/v1/platforms/{tenant.platform_id}/end-users/{user['id']}/budget", json={"max_usd": budget_usd}
            )
        )
    return user["id"], user["api_key"]["raw_key"]
