"""End users (SPEC §5.4) and ``/v1/me/usage`` (§6) against a real gateway on SQLite and PostgreSQL: creation
idempotent by external_id (also under 20 concurrent requests), fresh keys, the auto-created default budget, PATCH,
deactivation and deletion taking effect on authentication, extra keys, and tenant isolation."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.integration.test_platform_api import (
    NIL_ID,
    Tenant,
    _insert_usage_rows,
    _ok,
    _usage_row,
    assert_error,
    bad_request,
    eventually_unauthorized,
    make_tenant,
    not_found,
)
from tests.support.servers import GatewayServer
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.tables import budget_transactions, budgets


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


def _external() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


def create(tenant: Tenant, status: int = 201, **body: Any) -> dict[str, Any]:
    body.setdefault("external_id", _external())
    return _ok(tenant.client.post(f"{tenant.base}/end-users", json=body), status)  # type: ignore[no-any-return]


def as_key(gateway: GatewayServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _query(gateway: GatewayServer, query: sa.Select[Any]) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        engine = create_engine(gateway.settings)
        try:
            async with engine.connect() as conn:
                return [dict(row._mapping) for row in (await conn.execute(query)).all()]
        finally:
            await engine.dispose()

    return asyncio.run(run())


END_USER_FIELDS = {
    "id",
    "platform_id",
    "external_id",
    "display_name",
    "metadata",
    "is_active",
    "created_at",
    "updated_at",
}


# -- creation ---------------------------------------------------------------------------------------------------


def test_create_then_repeat_gives_the_same_user_and_a_fresh_key(gateway: GatewayServer, tenant: Tenant) -> None:
    external = _external()
    first = create(tenant, external_id=external, display_name="Dana", metadata={"plan": "pro"})
    assert set(first) == {*END_USER_FIELDS, "api_key", "budget"}
    assert first["platform_id"] == tenant.id
    assert first["external_id"] == external
    assert first["display_name"] == "Dana"
    assert first["metadata"] == {"plan": "pro"}
    assert first["is_active"] is True
    assert first["budget"] is None
    key = first["api_key"]
    assert key["raw_key"].startswith("sk-eu_")
    assert len(key["raw_key"]) == len("sk-eu_") + 43
    assert key["type"] == "end_user"
    assert key["end_user_id"] == first["id"]
    assert key["scopes"] == ["inference"]
    again = create(tenant, 200, external_id=external, display_name="Other", metadata={"plan": "free"})
    assert {k: again[k] for k in END_USER_FIELDS} == {k: first[k] for k in END_USER_FIELDS}
    assert again["api_key"]["id"] != key["id"]
    assert again["api_key"]["raw_key"] != key["raw_key"]
    assert again["budget"] is None
    for raw in (key["raw_key"], again["api_key"]["raw_key"]):
        with as_key(gateway, raw) as client:
            assert _ok(client.get("/v1/me/usage"))["total"] == 0
    keys = _ok(tenant.client.get(f"{tenant.base}/api-keys", params={"end_user_id": first["id"]}))
    assert {k["id"] for k in keys["data"]} == {key["id"], again["api_key"]["id"]}
    assert all("raw_key" not in k for k in keys["data"])
    # Validation comes before the repeat: a bad field is rejected even for an existing external_id.
    bad_request(tenant.client.post(f"{tenant.base}/end-users", json={"external_id": external, "x": 1}), "x")


def test_default_budget_is_created_with_its_opening_row(gateway: GatewayServer, admin: httpx.Client) -> None:
    fresh = make_tenant(gateway, admin, settings={"default_budget": {"max_usd": "5.5", "period": "monthly"}})
    with fresh.client:
        created = create(fresh)
        budget = created["budget"]
        assert budget["end_user_id"] == created["id"]
        assert budget["max_usd"] == 5.5
        assert budget["used_usd"] == 0
        assert budget["available_usd"] == 5.5
        assert budget["period"] == "monthly"
        assert budget["auto_replenish"] is False
        assert budget["replenish_amount"] is None
        assert budget["is_active"] is True
        start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        assert budget["period_start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
        ledger = _ok(fresh.client.get(f"{fresh.base}/end-users/{created['id']}/budget/transactions"))
        assert [(t["type"], t["amount_usd"], t["remaining_usd_after"]) for t in ledger["data"]] == [
            ("opening_balance", 5.5, 5.5)
        ]
        repeat = create(fresh, 200, external_id=created["external_id"])
        assert repeat["budget"] == budget


@pytest.mark.parametrize("with_budget", [False, True])
def test_concurrent_creates_yield_one_end_user(gateway: GatewayServer, admin: httpx.Client, with_budget: bool) -> None:
    settings = {"default_budget": {"max_usd": 1}} if with_budget else {}
    fresh = make_tenant(gateway, admin, settings=settings)
    external = _external()
    url = f"{gateway.url}{fresh.base}/end-users"
    headers = {"Authorization": f"Bearer {fresh.key}"}
    with fresh.client, ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(lambda _: httpx.post(url, json={"external_id": external}, headers=headers, timeout=60), range(20))
        )
        assert Counter(r.status_code for r in responses) == {201: 1, 200: 19}, [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        assert len({r.json()["api_key"]["raw_key"] for r in responses}) == 20
        listing = _ok(fresh.client.get(f"{fresh.base}/end-users", params={"external_id": external}))
        assert listing["total"] == 1
        end_user_id = listing["data"][0]["id"]
        if with_budget:
            assert len({r.json()["budget"]["id"] for r in responses}) == 1
            ledger = _ok(fresh.client.get(f"{fresh.base}/end-users/{end_user_id}/budget/transactions"))
            assert ledger["total"] == 1
        else:
            assert all(r.json()["budget"] is None for r in responses)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "external_id"),
        ({"external_id": ""}, "external_id"),
        ({"external_id": "x" * 256}, "external_id"),
        ({"external_id": "tab\there"}, "external_id"),
        ({"external_id": "nul\u0000"}, "external_id"),
        ({"external_id": 42}, "external_id"),
        ({"external_id": None}, "external_id"),
        ({"external_id": "a", "display_name": "d" * 101}, "display_name"),
        ({"external_id": "a", "display_name": 5}, "display_name"),
        ({"external_id": "a", "metadata": [1]}, "metadata"),
        ({"external_id": "a", "metadata": {"blob": "x" * 9000}}, "metadata"),
        ({"external_id": "a", "id": NIL_ID}, "id"),
        ({"external_id": "a", "is_active": False}, "is_active"),
        ({"external_id": "a", "api_key": "sk-eu_x"}, "api_key"),
        ({"external_id": "a", "budget": {"max_usd": 1}}, "budget"),
        ({"external_id": "a", "nickname": "x"}, "nickname"),
    ],
)
def test_create_rules(tenant: Tenant, body: dict[str, Any], param: str | None) -> None:
    before = _ok(tenant.client.get(f"{tenant.base}/end-users"))["total"]
    bad_request(tenant.client.post(f"{tenant.base}/end-users", json=body), param)
    assert _ok(tenant.client.get(f"{tenant.base}/end-users"))["total"] == before


def test_external_id_may_hold_any_printable_text(tenant: Tenant) -> None:
    external = "ünïcødé user@example.com / 42 " + "x" * 200
    created = create(tenant, external_id=external)
    listing = _ok(tenant.client.get(f"{tenant.base}/end-users", params={"external_id": external}))
    assert [u["id"] for u in listing["data"]] == [created["id"]]
    assert _ok(tenant.client.get(f"{tenant.base}/end-users", params={"external_id": external.upper()}))["total"] == 0


# -- reads and PATCH --------------------------------------------------------------------------------------------


def test_list_get_and_patch(gateway: GatewayServer, admin: httpx.Client) -> None:
    fresh = make_tenant(gateway, admin)
    with fresh.client:
        users = [create(fresh) for _ in range(3)]
        listing = _ok(fresh.client.get(f"{fresh.base}/end-users"))
        assert listing["total"] == 3
        assert [u["id"] for u in listing["data"]] == [u["id"] for u in reversed(users)]
        assert all(set(u) == END_USER_FIELDS for u in listing["data"])
        assert (
            _ok(fresh.client.get(f"{fresh.base}/end-users", params={"limit": 1, "page": 3}))["data"][0]["id"]
            == (users[0]["id"])
        )
        url = f"{fresh.base}/end-users/{users[1]['id']}"
        got = _ok(fresh.client.get(url))
        assert got == {k: users[1][k] for k in END_USER_FIELDS}
        patched = _ok(fresh.client.patch(url, json={"display_name": "Dana", "metadata": {"tier": 2}}))
        assert patched["display_name"] == "Dana"
        assert patched["metadata"] == {"tier": 2}
        assert patched["external_id"] == users[1]["external_id"]
        assert patched["updated_at"] >= got["updated_at"]
        cleared = _ok(fresh.client.patch(url, json={"display_name": None, "metadata": None}))
        assert cleared["display_name"] is None
        assert cleared["metadata"] == {}
        assert _ok(fresh.client.patch(url, json={})) == {
            **cleared,
            "updated_at": _ok(fresh.client.get(url))["updated_at"],
        }
        bad_request(fresh.client.patch(url, json={"external_id": "new"}), "external_id")
        bad_request(fresh.client.patch(url, json={"is_active": "no"}), "is_active")
        bad_request(fresh.client.patch(url, json={"platform_id": NIL_ID}), "platform_id")
        bad_request(fresh.client.patch(url, json={"display_name": "d" * 101}), "display_name")
        bad_request(fresh.client.patch(url, json={"color": "red"}), "color")
        not_found(fresh.client.get(f"{fresh.base}/end-users/{NIL_ID}"))
        not_found(fresh.client.get(f"{fresh.base}/end-users/not-a-uuid"))
        not_found(fresh.client.patch(f"{fresh.base}/end-users/{NIL_ID}", json={"bogus": 1}))  # 404 before the body
        bad_request(fresh.client.get(f"{fresh.base}/end-users", params={"limit": 0}), "limit")


def test_deactivated_end_user_is_forbidden_on_inference(gateway: GatewayServer, tenant: Tenant) -> None:
    created = create(tenant)
    url = f"{tenant.base}/end-users/{created['id']}"
    with as_key(gateway, created["api_key"]["raw_key"]) as client:
        # Active: past the access checks, the empty body is what fails.
        assert_error(client.post("/v1/chat/completions", json={}), 400, "invalid_request", "model")
        assert _ok(tenant.client.patch(url, json={"is_active": False}))["is_active"] is False
        assert_error(client.post("/v1/chat/completions", json={}), 403, "forbidden", None)
        assert _ok(client.get("/v1/me/usage"))["total"] == 0  # self-service still answers
        # Management of a deactivated end user still works.
        _ok(tenant.client.post(f"{url}/api-keys"), 201)
        assert _ok(tenant.client.patch(url, json={"is_active": True}))["is_active"] is True
        assert_error(client.post("/v1/chat/completions", json={}), 400, "invalid_request", "model")


def test_delete_revokes_keys_frees_the_external_id_and_keeps_the_ledger(
    gateway: GatewayServer, admin: httpx.Client
) -> None:
    fresh = make_tenant(gateway, admin, settings={"default_budget": {"max_usd": 2, "period": "daily"}})
    with fresh.client:
        created = create(fresh)
        url = f"{fresh.base}/end-users/{created['id']}"
        spare = _ok(fresh.client.post(f"{url}/api-keys", json={"name": "spare"}), 201)
        _ok(fresh.client.post(f"{url}/budget/topup", json={"amount_usd": 1}))
        _ok(fresh.client.delete(url), 204)
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            eventually_unauthorized(client, "/v1/me/usage", created["api_key"]["raw_key"])
            eventually_unauthorized(client, "/v1/me/usage", spare["raw_key"])
        not_found(fresh.client.get(url))
        not_found(fresh.client.patch(url, json={"display_name": "x"}))
        not_found(fresh.client.delete(url))
        not_found(fresh.client.get(f"{url}/budget"))
        not_found(fresh.client.post(f"{url}/budget/topup", json={"amount_usd": 1}))
        not_found(fresh.client.post(f"{url}/api-keys"))
        keys = _ok(fresh.client.get(f"{fresh.base}/api-keys", params={"end_user_id": created["id"]}))
        assert keys["total"] == 2
        assert all(k["is_active"] is False and k["revoked_at"] is not None for k in keys["data"])
        assert (
            _ok(fresh.client.get(f"{fresh.base}/end-users", params={"external_id": created["external_id"]}))["total"]
            == 0
        )
        reborn = create(fresh, external_id=created["external_id"])
        assert reborn["id"] != created["id"]
        assert reborn["budget"]["id"] != created["budget"]["id"]
        assert reborn["budget"]["max_usd"] == 2
    old_budget = _query(gateway, sa.select(budgets).where(budgets.c.id == created["budget"]["id"]))
    assert [(row["is_active"], row["max_nanos"]) for row in old_budget] == [(False, 3 * 10**9)]
    ledger = _query(
        gateway, sa.select(budget_transactions.c.type).where(budget_transactions.c.budget_id == created["budget"]["id"])
    )
    assert sorted(row["type"] for row in ledger) == ["opening_balance", "topup"]


def test_end_user_keys(gateway: GatewayServer, tenant: Tenant) -> None:
    created = create(tenant)
    url = f"{tenant.base}/end-users/{created['id']}/api-keys"
    expires = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    key = _ok(
        tenant.client.post(url, json={"name": "mobile", "scopes": ["inference"], "expires_at": expires.isoformat()}),
        201,
    )
    assert key["type"] == "end_user"
    assert key["end_user_id"] == created["id"]
    assert key["platform_id"] == tenant.id
    assert key["name"] == "mobile"
    assert key["scopes"] == ["inference"]
    assert key["expires_at"] == expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert key["raw_key"].startswith("sk-eu_")
    bare = _ok(tenant.client.post(url), 201)
    assert bare["scopes"] == ["inference"]
    bad_request(tenant.client.post(url, json={"scopes": ["manage"]}), "scopes[0]")
    bad_request(tenant.client.post(url, json={"scopes": ["inference", "inference"]}), "scopes[1]")  # §2.1
    bad_request(tenant.client.post(url, json={"scopes": []}), "scopes")
    bad_request(tenant.client.post(url, json={"scopes": "inference"}), "scopes")
    bad_request(tenant.client.post(url, json={"expires_at": "2001-01-01T00:00:00Z"}), "expires_at")
    bad_request(tenant.client.post(url, json={"type": "platform"}), "type")
    bad_request(tenant.client.post(url, json={"end_user_id": NIL_ID}), "end_user_id")
    not_found(tenant.client.post(f"{tenant.base}/end-users/{NIL_ID}/api-keys"))
    # Revocation through the platform's key routes (§5.2) takes effect within 1 s.
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        _ok(client.get("/v1/me/usage", headers={"Authorization": f"Bearer {key['raw_key']}"}))
        _ok(tenant.client.delete(f"{tenant.base}/api-keys/{key['id']}"), 204)
        eventually_unauthorized(client, "/v1/me/usage", key["raw_key"])
        _ok(client.get("/v1/me/usage", headers={"Authorization": f"Bearer {bare['raw_key']}"}))


def test_tenant_isolation(gateway: GatewayServer, admin: httpx.Client, tenant: Tenant, other: Tenant) -> None:
    mine = create(tenant)
    theirs = create(other)
    foreign = f"{tenant.base}/end-users/{theirs['id']}"
    not_found(tenant.client.get(foreign))
    not_found(tenant.client.patch(foreign, json={"display_name": "x"}))
    not_found(tenant.client.delete(foreign))
    not_found(tenant.client.post(f"{foreign}/api-keys"))
    not_found(tenant.client.get(f"{foreign}/budget"))
    not_found(tenant.client.post(f"{foreign}/budget", json={"max_usd": 1}))
    not_found(other.client.get(f"{other.base}/end-users/{mine['id']}"))
    not_found(tenant.client.get(f"{other.base}/end-users"))
    not_found(tenant.client.post(f"{other.base}/end-users", json={"external_id": "steal"}))
    assert (
        _ok(tenant.client.get(f"{tenant.base}/end-users", params={"external_id": theirs["external_id"]}))["total"] == 0
    )
    # The same external_id on two platforms is two end users.
    twin = create(other, external_id=mine["external_id"])
    assert twin["id"] != mine["id"]
    assert _ok(other.client.get(f"{other.base}/end-users/{theirs['id']}"))["display_name"] is None
    with as_key(gateway, mine["api_key"]["raw_key"]) as client:
        assert_error(client.get(f"{tenant.base}/end-users"), 403, "wrong_key_type", None)
        assert_error(client.get("/v1/admin/platforms"), 403, "wrong_key_type", None)
    assert_error(tenant.client.get("/v1/me/usage"), 403, "wrong_key_type", None)
    assert_error(tenant.client.get("/v1/me/budget"), 403, "wrong_key_type", None)
    assert_error(admin.get("/v1/me/usage"), 403, "wrong_key_type", None)
    assert_error(admin.get(f"{tenant.base}/end-users"), 403, "wrong_key_type", None)
    assert_error(httpx.get(f"{gateway.url}/v1/me/usage"), 401, "invalid_api_key", None)


# -- /v1/me/usage -----------------------------------------------------------------------------------------------


def test_me_usage_shows_only_the_callers_rows(gateway: GatewayServer, tenant: Tenant) -> None:
    me, neighbour = create(tenant), create(tenant)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    rows = [
        _usage_row(tenant.id, end_user_id=me["id"], created_at=base),
        _usage_row(
            tenant.id, end_user_id=me["id"], created_at=base + timedelta(minutes=1), model="claude", status="error"
        ),
        _usage_row(tenant.id, end_user_id=me["id"], created_at=base + timedelta(minutes=2), request_type="response"),
        _usage_row(tenant.id, end_user_id=neighbour["id"], created_at=base),
        _usage_row(tenant.id, end_user_id=None, created_at=base),
    ]
    _insert_usage_rows(gateway, rows)
    with as_key(gateway, me["api_key"]["raw_key"]) as client:

        def ids(**params: Any) -> list[str]:
            return [r["id"] for r in _ok(client.get("/v1/me/usage", params=params))["data"]]

        listing = _ok(client.get("/v1/me/usage"))
        assert listing["total"] == 3
        assert [r["id"] for r in listing["data"]] == [rows[2]["id"], rows[1]["id"], rows[0]["id"]]
        first = listing["data"][2]
        assert not {"cost_usd", "uncollected_usd", "provider_id", "provider_model"} & set(first)
        assert first["charged_usd"] == 0.00039675
        assert first["end_user_id"] == me["id"]
        assert first["prompt_tokens"] == 1200
        assert ids(model="claude") == [rows[1]["id"]]
        assert ids(status="error") == [rows[1]["id"]]
        assert ids(request_type="response") == [rows[2]["id"]]
        assert ids(since=(base + timedelta(minutes=1)).isoformat()) == [rows[2]["id"], rows[1]["id"]]
        assert ids(until=(base + timedelta(minutes=1)).isoformat()) == [rows[0]["id"]]
        assert ids(end_user_id=neighbour["id"]) == ids()  # not a filter here: always the caller's own rows
        assert ids(limit=1, page=2) == [rows[1]["id"]]
        bad_request(client.get("/v1/me/usage", params={"status": "ok"}), "status")
        bad_request(client.get("/v1/me/usage", params={"request_type": "x"}), "request_type")
        bad_request(client.get("/v1/me/usage", params={"since": "yesterday"}), "since")
        bad_request(client.get("/v1/me/usage", params={"limit": 101}), "limit")
