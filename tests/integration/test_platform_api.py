"""The platform API (SPEC §5.1–§5.3, §5.7, §12) against a real gateway on SQLite and PostgreSQL: settings rules,
keys and revocation, LLM configs (the provider key never comes back), wallet views, usage logs, tenant isolation."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.support.servers import GatewayServer
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.tables import usage_logs, wallet_transactions, wallets

NIL_ID = "00000000-0000-4000-8000-000000000000"
PROVIDER_SECRET = "sk-upstream-" + "Q" * 30


@dataclass
class Tenant:
    id: str
    key: str
    client: httpx.Client

    @property
    def base(self) -> str:
        return f"/v1/platforms/{self.id}"


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def assert_error(response: httpx.Response, status: int, code: str, param: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["param"] == param, error


def bad_request(response: httpx.Response, param: str | None) -> None:
    assert_error(response, 400, "invalid_request", param)


def not_found(response: httpx.Response) -> None:
    assert_error(response, 404, "not_found", None)


def make_tenant(gateway: GatewayServer, admin: httpx.Client, **extra: Any) -> Tenant:
    created = _ok(admin.post("/v1/admin/platforms", json={"name": f"Tenant {uuid.uuid4().hex[:8]}", **extra}), 201)
    key = created["api_key"]["raw_key"]
    client = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Tenant(created["platform"]["id"], key, client)


@pytest.fixture(scope="module")
def tenant(gateway: GatewayServer, admin: httpx.Client) -> Iterator[Tenant]:
    made = make_tenant(gateway, admin)
    yield made
    made.client.close()


@pytest.fixture(scope="module")
def other(gateway: GatewayServer, admin: httpx.Client) -> Iterator[Tenant]:
    made = make_tenant(gateway, admin)
    yield made
    made.client.close()


@pytest.fixture(scope="module")
def provider(admin: httpx.Client) -> dict[str, Any]:
    body = {"slug": f"cfg-{uuid.uuid4().hex[:10]}", "name": "Configurable", "kind": "openai"}
    return _ok(admin.post("/v1/admin/providers", json=body), 201)  # type: ignore[no-any-return]


def eventually_unauthorized(client: httpx.Client, url: str, key: str) -> float:
    """Seconds until ``key`` gets 401 on ``url`` (fails past 1 s, the SPEC §2.2 bound)."""
    started = time.monotonic()
    while True:
        response = client.get(url, headers={"Authorization": f"Bearer {key}"})
        elapsed = time.monotonic() - started
        if response.status_code == 401:
            assert response.json()["error"]["code"] == "invalid_api_key"
            return elapsed
        assert elapsed < 1.0, f"key still accepted after {elapsed:.2f}s"
        time.sleep(0.05)


# -- the platform -----------------------------------------------------------------------------------------------


def test_get_and_patch_platform(tenant: Tenant) -> None:
    current = _ok(tenant.client.get(tenant.base))
    assert current["id"] == tenant.id
    assert set(current) == {"id", "name", "slug", "settings", "created_at", "updated_at"}
    renamed = _ok(tenant.client.patch(tenant.base, json={"name": "Renamed Tenant"}))
    assert renamed["name"] == "Renamed Tenant"
    assert renamed["slug"] == current["slug"]
    settings = {
        "default_budget": {"max_usd": "5.5", "period": "monthly"},
        "markup_percentage": 15.25,
        "rate_limits": {"rpm": 60, "tpm": 200000, "rpd": None},
        "wallet_low_balance_threshold": 20,
        "mcp_free_calls_per_month": 250,
        "mcp_external_servers": True,
        "mcp_redirect_origins": ["https://app.example.com", "http://127.0.0.1:3000"],
    }
    patched = tenant.client.patch(tenant.base, json={"settings": settings})
    assert '"markup_percentage":15.25' in patched.text
    assert _ok(patched)["settings"] == {**settings, "default_budget": {"max_usd": 5.5, "period": "monthly"}}
    # Each settings key present replaces its stored value whole; absent keys are kept.
    partial = _ok(tenant.client.patch(tenant.base, json={"settings": {"rate_limits": {"tpm": 5}}}))
    assert partial["settings"]["rate_limits"] == {"rpm": None, "tpm": 5, "rpd": None}
    assert partial["settings"]["markup_percentage"] == 15.25
    assert partial["settings"]["default_budget"] == {"max_usd": 5.5, "period": "monthly"}
    cleared = _ok(
        tenant.client.patch(
            tenant.base,
            json={"settings": {"default_budget": None, "wallet_low_balance_threshold": None, "markup_percentage": 0}},
        )
    )
    assert cleared["settings"]["default_budget"] is None
    assert cleared["settings"]["wallet_low_balance_threshold"] is None
    assert cleared["settings"]["markup_percentage"] == 0
    assert cleared["settings"]["rate_limits"]["tpm"] == 5
    assert _ok(tenant.client.get(tenant.base)) == cleared
    budget = _ok(tenant.client.patch(tenant.base, json={"settings": {"default_budget": {"max_usd": 0}}}))
    assert budget["settings"]["default_budget"] == {"max_usd": 0, "period": "one_time"}


@pytest.mark.parametrize(
    ("settings", "param"),
    [
        ({"markup_percentage": 1000.01}, "settings.markup_percentage"),
        ({"markup_percentage": -1}, "settings.markup_percentage"),
        ({"markup_percentage": 15.555}, "settings.markup_percentage"),
        ({"markup_percentage": True}, "settings.markup_percentage"),
        ({"markup_percentage": "15"}, "settings.markup_percentage"),
        ({"markup_percentage": None}, "settings.markup_percentage"),
        ({"rate_limits": {"rpm": 0}}, "settings.rate_limits.rpm"),
        ({"rate_limits": {"tpm": 1000000001}}, "settings.rate_limits.tpm"),
        ({"rate_limits": {"rpd": 1.5}}, "settings.rate_limits.rpd"),
        ({"rate_limits": {"rpd": False}}, "settings.rate_limits.rpd"),
        ({"rate_limits": {"rph": 1}}, "settings.rate_limits.rph"),
        ({"rate_limits": [60]}, "settings.rate_limits"),
        ({"default_budget": {"period": "monthly"}}, "settings.default_budget.max_usd"),
        ({"default_budget": {"max_usd": -1}}, "settings.default_budget.max_usd"),
        ({"default_budget": {"max_usd": "abc"}}, "settings.default_budget.max_usd"),
        ({"default_budget": {"max_usd": 5, "period": "weekly"}}, "settings.default_budget.period"),
        ({"default_budget": {"max_usd": 5, "auto_replenish": True}}, "settings.default_budget.auto_replenish"),
        ({"default_budget": 5}, "settings.default_budget"),
        ({"wallet_low_balance_threshold": -0.5}, "settings.wallet_low_balance_threshold"),
        ({"wallet_low_balance_threshold": "0.0000000001"}, "settings.wallet_low_balance_threshold"),
        ({"wallet_low_balance_threshold": True}, "settings.wallet_low_balance_threshold"),
        ({"markup": 5}, "settings.markup"),
        ({"mcp_free_calls_per_month": -1}, "settings.mcp_free_calls_per_month"),
        ({"mcp_free_calls_per_month": 1000000001}, "settings.mcp_free_calls_per_month"),
        ({"mcp_free_calls_per_month": 1.5}, "settings.mcp_free_calls_per_month"),
        ({"mcp_free_calls_per_month": None}, "settings.mcp_free_calls_per_month"),
        ({"mcp_external_servers": "yes"}, "settings.mcp_external_servers"),
        ({"mcp_redirect_origins": "https://a.example"}, "settings.mcp_redirect_origins"),
        ({"mcp_redirect_origins": ["https://a.example/path"]}, "settings.mcp_redirect_origins[0]"),
        ({"mcp_redirect_origins": ["https://a.example", "ftp://b.example"]}, "settings.mcp_redirect_origins[1]"),
        ({"mcp_redirect_origins": ["https://user@a.example"]}, "settings.mcp_redirect_origins[0]"),
        ({"mcp_redirect_origins": ["https://a.example?x=1"]}, "settings.mcp_redirect_origins[0]"),
        ({"mcp_redirect_origins": ["https://a.example:99999"]}, "settings.mcp_redirect_origins[0]"),
        ({"mcp_redirect_origins": [5]}, "settings.mcp_redirect_origins[0]"),
    ],
)
def test_settings_rules(tenant: Tenant, settings: dict[str, Any], param: str) -> None:
    before = _ok(tenant.client.get(tenant.base))
    bad_request(tenant.client.patch(tenant.base, json={"settings": settings}), param)
    assert _ok(tenant.client.get(tenant.base)) == before


def test_platform_patch_rejects_read_only_and_unknown_fields(tenant: Tenant) -> None:
    for field, value in [("slug", "new-slug"), ("id", NIL_ID), ("created_at", "2026-01-01T00:00:00Z"), ("x", 1)]:
        bad_request(tenant.client.patch(tenant.base, json={field: value}), field)
    bad_request(tenant.client.patch(tenant.base, json={"name": ""}), "name")
    bad_request(tenant.client.patch(tenant.base, json={"settings": None}), "settings")
    bad_request(tenant.client.patch(tenant.base, content=b"{}", headers={"content-type": "text/plain"}), "Content-Type")


def test_access_checks(gateway: GatewayServer, admin: httpx.Client, tenant: Tenant, other: Tenant) -> None:
    not_found(tenant.client.get(other.base))
    not_found(tenant.client.get("/v1/platforms/not-a-uuid"))
    not_found(tenant.client.get(f"{other.base}/wallet"))
    not_found(tenant.client.patch(other.base, json={"name": "hijack"}))
    assert_error(httpx.get(f"{gateway.url}{tenant.base}"), 401, "invalid_api_key", None)
    assert_error(admin.get(tenant.base), 403, "wrong_key_type", None)
    inference_only = _ok(tenant.client.post(f"{tenant.base}/api-keys", json={"scopes": ["inference"]}), 201)
    headers = {"Authorization": f"Bearer {inference_only['raw_key']}"}
    assert_error(httpx.get(f"{gateway.url}{tenant.base}", headers=headers), 403, "forbidden", None)
    not_found(tenant.client.get(f"{tenant.base}/nothing-here"))


# -- API keys ---------------------------------------------------------------------------------------------------


def test_key_create_list_and_rules(tenant: Tenant) -> None:
    url = f"{tenant.base}/api-keys"
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    offset = expires.astimezone().isoformat()  # any offset is accepted
    created = _ok(tenant.client.post(url, json={"name": "ci", "scopes": ["manage"], "expires_at": offset}), 201)
    assert created["scopes"] == ["manage"]
    assert created["expires_at"] == expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert created["raw_key"].startswith("sk-plat_")
    assert created["is_active"] is True
    assert created["revoked_at"] is None
    assert created["end_user_id"] is None
    bare = _ok(tenant.client.post(url), 201)  # no body: every field is optional
    assert bare["scopes"] == ["inference", "manage"]
    assert bare["name"] is None
    assert bare["expires_at"] is None
    listing = _ok(tenant.client.get(url))
    assert listing["data"][0]["id"] == bare["id"]
    assert listing["data"][1]["id"] == created["id"]
    assert all("raw_key" not in key for key in listing["data"])
    assert created["raw_key"] not in tenant.client.get(url).text
    assert all(k["type"] == "platform" for k in listing["data"])
    assert _ok(tenant.client.get(url, params={"type": "end_user"}))["data"] == []
    assert _ok(tenant.client.get(url, params={"end_user_id": NIL_ID}))["total"] == 0
    bad_request(tenant.client.get(url, params={"type": "operator"}), "type")
    bad_request(tenant.client.post(url, json={"scopes": ["inference", "admin"]}), "scopes[1]")
    bad_request(tenant.client.post(url, json={"scopes": ["manage", "inference", "manage"]}), "scopes[2]")  # §2.1
    bad_request(tenant.client.post(url, json={"scopes": [1]}), "scopes[0]")
    bad_request(tenant.client.post(url, json={"scopes": "inference"}), "scopes")
    bad_request(tenant.client.post(url, json={"scopes": []}), "scopes")
    bad_request(tenant.client.post(url, json={"name": "n" * 101}), "name")
    bad_request(tenant.client.post(url, json={"expires_at": "2001-01-01T00:00:00Z"}), "expires_at")
    bad_request(tenant.client.post(url, json={"expires_at": "tomorrow"}), "expires_at")
    bad_request(tenant.client.post(url, json={"expires_at": "2099-02-30T00:00:00Z"}), "expires_at")
    bad_request(tenant.client.post(url, json={"expires_at": 4102444800}), "expires_at")
    bad_request(tenant.client.post(url, json={"raw_key": "sk-plat_x"}), "raw_key")
    bad_request(tenant.client.post(url, json={"type": "end_user"}), "type")
    bad_request(tenant.client.post(url, json={"owner": "me"}), "owner")


def test_revoked_key_stops_working(gateway: GatewayServer, tenant: Tenant, other: Tenant) -> None:
    url = f"{tenant.base}/api-keys"
    created = _ok(tenant.client.post(url, json={"name": "short-lived"}), 201)
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        _ok(client.get(tenant.base, headers={"Authorization": f"Bearer {created['raw_key']}"}))
        not_found(other.client.delete(f"{other.base}/api-keys/{created['id']}"))
        not_found(other.client.delete(f"{tenant.base}/api-keys/{created['id']}"))
        _ok(tenant.client.delete(f"{url}/{created['id']}"), 204)
        eventually_unauthorized(client, tenant.base, created["raw_key"])
    _ok(tenant.client.delete(f"{url}/{created['id']}"), 204)  # again: still 204
    listed = {k["id"]: k for k in _ok(tenant.client.get(url, params={"limit": 100}))["data"]}
    assert listed[created["id"]]["is_active"] is False
    assert listed[created["id"]]["revoked_at"] is not None
    not_found(tenant.client.delete(f"{url}/{NIL_ID}"))
    not_found(tenant.client.delete(f"{url}/bad-id"))


def test_key_expiry_is_enforced(gateway: GatewayServer, tenant: Tenant) -> None:
    expires = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    created = _ok(tenant.client.post(f"{tenant.base}/api-keys", json={"expires_at": expires}), 201)
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {created['raw_key']}"}
        _ok(client.get(tenant.base, headers=headers))
        time.sleep(2.2)
        assert_error(client.get(tenant.base, headers=headers), 401, "invalid_api_key", None)


def test_deleted_platform_keys_stop_working(gateway: GatewayServer, admin: httpx.Client) -> None:
    doomed = make_tenant(gateway, admin)
    with doomed.client:
        spare = _ok(doomed.client.post(f"{doomed.base}/api-keys", json={}), 201)["raw_key"]
        _ok(doomed.client.delete(doomed.base), 204)
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            eventually_unauthorized(client, doomed.base, doomed.key)
            eventually_unauthorized(client, doomed.base, spare)


# -- LLM configs ------------------------------------------------------------------------------------------------


def test_llm_configs(admin: httpx.Client, tenant: Tenant, other: Tenant, provider: dict[str, Any]) -> None:
    url = f"{tenant.base}/llm-configs"
    seen: list[str] = []

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = tenant.client.request(method, path, **kwargs)
        seen.append(response.text)
        return response

    first = _ok(call("POST", url, json={"provider_id": provider["id"], "api_key": PROVIDER_SECRET}), 201)
    assert set(first) == {
        "id",
        "platform_id",
        "provider_id",
        "provider_slug",
        "is_default",
        "is_active",
        "created_at",
        "updated_at",
    }
    assert first["provider_slug"] == provider["slug"]
    assert first["platform_id"] == tenant.id
    assert first["is_default"] is False
    assert first["is_active"] is True
    second = _ok(
        call("POST", url, json={"provider_id": provider["id"], "api_key": PROVIDER_SECRET + "2", "is_default": True}),
        201,
    )
    assert second["is_default"] is True
    promoted = _ok(call("PATCH", f"{url}/{first['id']}", json={"is_default": True, "api_key": "sk-rotated-1"}))
    assert promoted["is_default"] is True
    assert _ok(call("GET", f"{url}/{second['id']}"))["is_default"] is False
    listing = _ok(call("GET", url, params={"provider_id": provider["id"]}))
    assert [c["id"] for c in listing["data"]] == [second["id"], first["id"]]
    assert _ok(call("GET", url, params={"provider_id": NIL_ID}))["total"] == 0
    deactivated = _ok(call("PATCH", f"{url}/{second['id']}", json={"is_active": False}))
    assert deactivated["is_active"] is False
    assert all(PROVIDER_SECRET not in text and "sk-rotated-1" not in text for text in seen)
    assert all("api_key" not in text for text in seen)
    # Tenant isolation: another platform sees none of it.
    for method in ("GET", "PATCH", "DELETE"):
        kwargs: dict[str, Any] = {"json": {"is_active": True}} if method == "PATCH" else {}
        not_found(other.client.request(method, f"{other.base}/llm-configs/{first['id']}", **kwargs))
    assert _ok(other.client.get(f"{other.base}/llm-configs"))["total"] == 0
    _ok(call("DELETE", f"{url}/{second['id']}"), 204)
    not_found(call("GET", f"{url}/{second['id']}"))
    not_found(call("DELETE", f"{url}/{second['id']}"))
    not_found(call("GET", f"{url}/not-a-uuid"))


def test_llm_config_rules(admin: httpx.Client, tenant: Tenant, provider: dict[str, Any]) -> None:
    url = f"{tenant.base}/llm-configs"
    good = {"provider_id": provider["id"], "api_key": PROVIDER_SECRET}
    for field, value in [
        ("provider_id", NIL_ID),
        ("provider_id", "nope"),
        ("provider_id", None),
        ("api_key", ""),
        ("api_key", "k" * 4097),
        ("api_key", "line\nbreak"),
        ("api_key", 12345),
        ("is_default", "yes"),
        ("is_active", 0),
        ("provider_slug", "x"),
        ("platform_id", NIL_ID),
        ("api_base", "http://evil"),
    ]:
        response = tenant.client.post(url, json={**good, field: value})
        bad_request(response, field)
        assert PROVIDER_SECRET not in response.text
    bad_request(tenant.client.post(url, json={"provider_id": provider["id"]}), "api_key")
    bad_request(tenant.client.post(url, json={"api_key": PROVIDER_SECRET}), "provider_id")
    inactive = _ok(
        admin.post(
            "/v1/admin/providers",
            json={"slug": f"off-{uuid.uuid4().hex[:8]}", "name": "Off", "kind": "gemini", "is_active": False},
        ),
        201,
    )
    bad_request(tenant.client.post(url, json={**good, "provider_id": inactive["id"]}), "provider_id")
    created = _ok(tenant.client.post(url, json=good), 201)
    bad_request(tenant.client.patch(f"{url}/{created['id']}", json={"provider_id": inactive["id"]}), "provider_id")
    bad_request(tenant.client.patch(f"{url}/{created['id']}", json={"id": NIL_ID}), "id")


# -- wallet and logs --------------------------------------------------------------------------------------------


def test_wallet_and_transactions(gateway: GatewayServer, admin: httpx.Client) -> None:
    fresh = make_tenant(gateway, admin, settings={"wallet_low_balance_threshold": "2.5"})
    with fresh.client:
        wallet = _ok(fresh.client.get(f"{fresh.base}/wallet"))
        assert wallet["balance_usd"] == 0
        assert wallet["recent_transactions"] == []
        assert wallet["low_balance_threshold"] == 2.5
        started = datetime.now(UTC)
        amounts = ["0.1", "0.2", "1", "2", "3", "4", "5.000000001"]
        for amount in amounts:
            _ok(admin.post(f"/v1/admin/platforms/{fresh.id}/wallet/topup", json={"amount_usd": amount}))
        response = fresh.client.get(f"{fresh.base}/wallet")
        assert '"balance_usd":15.300000001,' in response.text
        wallet = _ok(response)
        assert wallet["available_usd"] == wallet["balance_usd"]
        assert wallet["held_usd"] == 0
        recent = wallet["recent_transactions"]
        assert [t["amount_usd"] for t in recent] == [5.000000001, 4, 3, 2, 1]
        assert recent[0]["balance_usd_after"] == 15.300000001
        assert recent[-1]["balance_usd_after"] == 1.3
        url = f"{fresh.base}/wallet/transactions"
        full = _ok(fresh.client.get(url, params={"limit": 100}))
        assert full["total"] == len(amounts)
        assert _ok(fresh.client.get(url, params={"type": "usage"}))["total"] == 0
        assert _ok(fresh.client.get(url, params={"type": "topup", "limit": 3}))["total"] == len(amounts)
        pivot = full["data"][2]["created_at"]
        newer = _ok(fresh.client.get(url, params={"since": pivot}))
        assert [t["id"] for t in newer["data"]] == [t["id"] for t in full["data"][:3]]
        older = _ok(fresh.client.get(url, params={"until": pivot}))
        assert [t["id"] for t in older["data"]] == [t["id"] for t in full["data"][3:]]
        shifted = (started - timedelta(seconds=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        assert _ok(fresh.client.get(url, params={"since": shifted}))["total"] == len(amounts)
        ahead = (started + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+05:00")  # = started - 4h UTC
        assert _ok(fresh.client.get(url, params={"since": ahead}))["total"] == len(amounts)
        bad_request(fresh.client.get(url, params={"type": "refund"}), "type")
        bad_request(fresh.client.get(url, params={"since": "yesterday"}), "since")
        bad_request(fresh.client.get(url, params={"until": "2026-13-01T00:00:00Z"}), "until")
        bad_request(fresh.client.get(url, params={"since": "2026-05-01"}), "since")


def _insert_usage_rows(gateway: GatewayServer, rows: list[dict[str, Any]]) -> None:
    """Inserts usage rows as settled calls: each row's collected cost is paid from its platform's wallet by a
    ``usage`` row (SPEC §9.6 invariant 6, checked when the gateway fixture stops)."""

    async def insert() -> None:
        engine = create_engine(gateway.settings)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.insert(usage_logs), rows)
                for row in rows:
                    await _pay(conn, row)
        finally:
            await engine.dispose()

    asyncio.run(insert())


async def _pay(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """The wallet rows of a settled call, after a top-up of the same amount: the wallet's balance, which the tests
    read, stays as it was, and its ledger stays one running balance (SPEC §9.5)."""
    paid = row["cost_nanos"] - row["uncollected_nanos"]
    if row["status"] == "error" or paid == 0:
        return
    wallet = (
        await conn.execute(  # locks the wallet while its balance is read: a write, not a SELECT (SQLite)
            sa.update(wallets)
            .where(wallets.c.platform_id == row["platform_id"])
            .values(updated_at=wallets.c.updated_at)
            .returning(wallets.c.id, wallets.c.balance_nanos)
        )
    ).one()
    common = {
        "wallet_id": wallet.id,
        "platform_id": row["platform_id"],
        "metadata": {},
        "created_at": datetime.now(UTC),
    }
    await conn.execute(
        sa.insert(wallet_transactions),
        [
            {
                **common,
                "id": str(uuid.uuid4()),
                "type": "topup",
                "amount_nanos": paid,
                "description": "test payment",
                "balance_after_nanos": wallet.balance_nanos + paid,
                "request_id": None,
            },
            {
                **common,
                "id": str(uuid.uuid4()),
                "type": "usage",
                "amount_nanos": -paid,
                "description": row["model"],
                "balance_after_nanos": wallet.balance_nanos,
                "request_id": row["request_id"],
            },
        ],
    )


def _usage_row(platform_id: str, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "platform_id": platform_id,
        "end_user_id": None,
        "request_type": "chat.completion",
        "provider_id": NIL_ID,
        "model": "gpt-4o-mini",
        "provider_model": "gpt-4o-mini-2024-07-18",
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "cached_tokens": 200,
        "latency_ms": 1840,
        "ttft_ms": 212,
        "cost_nanos": 345_000,
        "charged_nanos": 396_750,
        "uncollected_nanos": 0,
        "status": "success",
        "finish_reason": "stop",
        "error_code": None,
        "token_count_method": "reported",
        "request_id": "req_" + uuid.uuid4().hex,
        "session_id": None,
        "metadata": {},
        "created_at": datetime.now(UTC),
    }
    row.update(extra)
    return row


def test_usage_logs(gateway: GatewayServer, admin: httpx.Client, other: Tenant) -> None:
    fresh = make_tenant(gateway, admin)
    end_user = str(uuid.uuid4())
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    rows = [
        _usage_row(fresh.id, end_user_id=end_user, created_at=base),
        _usage_row(
            fresh.id,
            charged_nanos=None,
            model="claude",
            status="error",
            cost_nanos=0,
            created_at=base + timedelta(minutes=1),
            request_type="response",
            ttft_ms=None,
        ),
        _usage_row(
            fresh.id,
            status="interrupted",
            created_at=base + timedelta(minutes=2),
            uncollected_nanos=5,
            metadata={"trace": "t-1"},
        ),
        _usage_row(other.id, created_at=base + timedelta(minutes=3)),
    ]
    _insert_usage_rows(gateway, rows)
    with fresh.client:
        url = f"{fresh.base}/logs"
        response = fresh.client.get(url)
        listing = _ok(response)
        assert listing["total"] == 3
        assert [r["id"] for r in listing["data"]] == [rows[2]["id"], rows[1]["id"], rows[0]["id"]]
        first = listing["data"][2]
        assert first == {
            "id": rows[0]["id"],
            "platform_id": fresh.id,
            "end_user_id": end_user,
            "request_type": "chat.completion",
            "model": "gpt-4o-mini",
            "provider_id": NIL_ID,
            "provider_model": "gpt-4o-mini-2024-07-18",
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "cached_tokens": 200,
            "latency_ms": 1840,
            "ttft_ms": 212,
            "cost_usd": 0.000345,
            "charged_usd": 0.00039675,
            "uncollected_usd": 0,
            "status": "success",
            "finish_reason": "stop",
            "error_code": None,
            "token_count_method": "reported",
            "request_id": rows[0]["request_id"],
            "session_id": None,
            "metadata": {},
            "response_id": None,
            "iteration": None,
            "thread_id": None,
            "mcp_app": None,
            "mcp_tool": None,
            "mcp_free": None,
            "created_at": base.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        assert '"cost_usd":0.000345,' in response.text
        assert listing["data"][1]["charged_usd"] is None
        assert listing["data"][0]["uncollected_usd"] == 0.000000005
        assert listing["data"][0]["metadata"] == {"trace": "t-1"}

        def ids(**params: Any) -> list[str]:
            return [r["id"] for r in _ok(fresh.client.get(url, params=params))["data"]]

        assert ids(model="claude") == [rows[1]["id"]]
        assert ids(status="interrupted") == [rows[2]["id"]]
        assert ids(request_type="response") == [rows[1]["id"]]
        assert ids(end_user_id=end_user) == [rows[0]["id"]]
        assert ids(end_user_id="not-an-id") == []
        assert ids(
            since=(base + timedelta(minutes=1)).isoformat(), until=(base + timedelta(minutes=2)).isoformat()
        ) == [rows[1]["id"]]
        assert ids(limit=1, page=3) == [rows[0]["id"]]
        assert ids(limit=1, page=4) == []
        bad_request(fresh.client.get(url, params={"status": "ok"}), "status")
        bad_request(fresh.client.get(url, params={"model": "gpt\x00"}), "model")
        assert ids(end_user_id="nul\x00") == []
        bad_request(fresh.client.get(url, params={"request_type": "chat"}), "request_type")
        bad_request(fresh.client.get(url, params={"page": "0"}), "page")
        bad_request(fresh.client.get(url, params={"limit": "1000"}), "limit")
        bad_request(fresh.client.get(url, params={"until": "2026-05-01T00:00:00"}), "until")
    assert [r["id"] for r in _ok(other.client.get(f"{other.base}/logs"))["data"]] == [rows[3]["id"]]
