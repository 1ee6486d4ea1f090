"""The operator API (SPEC §4) against a real gateway on SQLite and PostgreSQL: providers, model rows, platforms,
recovery keys and wallet top-ups, with every validation rule checked by its exact ``param``."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support.servers import GatewayServer

NIL_ID = "00000000-0000-4000-8000-000000000000"


def _slug(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def assert_error(response: httpx.Response, status: int, code: str, param: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["param"] == param, error
    assert error["message"].endswith("."), error


def bad_request(response: httpx.Response, param: str | None) -> None:
    assert_error(response, 400, "invalid_request", param)


def new_provider(admin: httpx.Client, kind: str = "openai", **extra: Any) -> dict[str, Any]:
    body = {"slug": _slug(kind.replace("_", "-")), "name": "Provider", "kind": kind, **extra}
    if kind == "openai_compatible" and "base_url" not in extra:
        body["base_url"] = "http://127.0.0.1:9/v1"
    return _ok(admin.post("/v1/admin/providers", json=body), 201)


def model_body(provider_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "slug": _slug("m"),
        "provider_id": provider_id,
        "upstream_model": "gpt-4o-mini-2024-07-18",
        "input_price_per_mtok": "0.15",
        "output_price_per_mtok": 0.6,
        "max_output_tokens": 1000,
        **extra,
    }


def new_platform(admin: httpx.Client, **extra: Any) -> dict[str, Any]:
    return _ok(admin.post("/v1/admin/platforms", json={"name": f"Acme {uuid.uuid4().hex[:8]}", **extra}), 201)


# -- authentication ---------------------------------------------------------------------------------------------


def test_operator_routes_need_the_operator_key(gateway: GatewayServer, admin: httpx.Client) -> None:
    assert_error(httpx.get(f"{gateway.url}/v1/admin/providers"), 401, "invalid_api_key", None)
    created = new_platform(admin)
    platform_key = created["api_key"]["raw_key"]
    headers = {"Authorization": f"Bearer {platform_key}"}
    assert_error(httpx.get(f"{gateway.url}/v1/admin/providers", headers=headers), 403, "wrong_key_type", None)
    assert_error(admin.put("/v1/admin/providers"), 404, "not_found", None)


# -- providers --------------------------------------------------------------------------------------------------


def test_provider_create_defaults_and_read(admin: httpx.Client) -> None:
    created = new_provider(admin, "anthropic")
    assert created["base_url"] == "https://api.anthropic.com"
    assert created["is_active"] is True
    assert created["kind"] == "anthropic"
    assert created["created_at"].endswith("Z")
    assert set(created) == {"id", "slug", "name", "kind", "base_url", "is_active", "created_at", "updated_at"}
    assert _ok(admin.get(f"/v1/admin/providers/{created['id']}")) == created
    expected = {
        "openai": "https://api.openai.com/v1",
        "gemini": "https://generativelanguage.googleapis.com",
        "asi1": "https://api.asi1.ai/v1",
    }
    for kind, url in expected.items():
        assert new_provider(admin, kind)["base_url"] == url


def test_provider_base_url_rules(admin: httpx.Client) -> None:
    body = {"slug": _slug(), "name": "Local", "kind": "openai_compatible"}
    bad_request(admin.post("/v1/admin/providers", json=body), "base_url")
    created = new_provider(admin, "openai_compatible", base_url="HTTP://localhost:8000/v1/")
    assert created["base_url"] == "http://localhost:8000/v1"
    for url in [
        "ftp://example.com",
        "/v1",
        "example.com/v1",
        "https://example.com/v1?x=1",
        "https://example.com/v1#frag",
        "https://user:pw@example.com/v1",
        "https://example.com:99999/v1",
        "https://exa mple.com",
        "",
        42,
    ]:
        response = admin.post("/v1/admin/providers", json={**body, "slug": _slug(), "base_url": url})
        bad_request(response, "base_url")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("slug", "Upper"),
        ("slug", "-leading"),
        ("slug", "a" * 65),
        ("slug", 7),
        ("name", ""),
        ("name", "n" * 101),
        ("name", None),
        ("kind", "azure"),
        ("kind", None),
        ("is_active", "true"),
        ("is_active", 1),
    ],
)
def test_provider_field_rules(admin: httpx.Client, field: str, value: Any) -> None:
    body = {"slug": _slug(), "name": "Provider", "kind": "openai", field: value}
    bad_request(admin.post("/v1/admin/providers", json=body), field)


def test_provider_required_unknown_and_read_only_fields(admin: httpx.Client) -> None:
    for missing in ("slug", "name", "kind"):
        body = {"slug": _slug(), "name": "Provider", "kind": "openai"}
        del body[missing]
        bad_request(admin.post("/v1/admin/providers", json=body), missing)
    base = {"slug": _slug(), "name": "Provider", "kind": "openai"}
    bad_request(admin.post("/v1/admin/providers", json={**base, "api_key": "sk-x"}), "api_key")
    bad_request(admin.post("/v1/admin/providers", json={**base, "id": NIL_ID}), "id")
    bad_request(admin.post("/v1/admin/providers", json={**base, "created_at": "2026-01-01T00:00:00Z"}), "created_at")
    bad_request(admin.post("/v1/admin/providers", content=b"[]", headers={"content-type": "application/json"}), None)
    bad_request(
        admin.post("/v1/admin/providers", content=b"{}", headers={"content-type": "text/plain"}), "Content-Type"
    )


def test_provider_slug_is_unique(admin: httpx.Client) -> None:
    created = new_provider(admin)
    body = {"slug": created["slug"], "name": "Again", "kind": "gemini"}
    bad_request(admin.post("/v1/admin/providers", json=body), "slug")


def test_provider_list_filter_and_paging(admin: httpx.Client) -> None:
    ids = [new_provider(admin, "gemini")["id"] for _ in range(3)]
    listing = _ok(admin.get("/v1/admin/providers", params={"kind": "gemini", "limit": 100}))
    assert listing["page"] == 1
    assert listing["limit"] == 100
    assert all(p["kind"] == "gemini" for p in listing["data"])
    assert listing["total"] == len(listing["data"]) >= 3
    listed = [p["id"] for p in listing["data"]]
    assert listed[:3] == ids[::-1]  # newest first
    page2 = _ok(admin.get("/v1/admin/providers", params={"kind": "gemini", "limit": 1, "page": 2}))
    assert [p["id"] for p in page2["data"]] == [listed[1]]
    past = _ok(admin.get("/v1/admin/providers", params={"page": 100000}))
    assert past["data"] == []
    assert past["total"] >= 3
    default = _ok(admin.get("/v1/admin/providers"))
    assert default["limit"] == 20
    bad_request(admin.get("/v1/admin/providers", params={"kind": "azure"}), "kind")
    for name, value in [("page", "0"), ("page", "-1"), ("page", "x"), ("limit", "0"), ("limit", "101"), ("limit", "")]:
        bad_request(admin.get("/v1/admin/providers", params={name: value}), name)


def test_provider_patch(admin: httpx.Client) -> None:
    created = new_provider(admin, "openai_compatible")
    url = f"/v1/admin/providers/{created['id']}"
    updated = _ok(
        admin.patch(url, json={"name": "Renamed", "base_url": "https://models.internal/v2/", "is_active": False})
    )
    assert updated["name"] == "Renamed"
    assert updated["base_url"] == "https://models.internal/v2"
    assert updated["is_active"] is False
    assert updated["slug"] == created["slug"]
    assert updated["updated_at"] >= created["updated_at"]
    bad_request(admin.patch(url, json={"slug": "other"}), "slug")
    bad_request(admin.patch(url, json={"kind": "openai"}), "kind")
    bad_request(admin.patch(url, json={"id": NIL_ID}), "id")
    bad_request(admin.patch(url, json={"base_url": None}), "base_url")  # openai_compatible has no default
    bad_request(admin.patch(url, json={"name": 5}), "name")
    openai = new_provider(admin, "openai", base_url="https://proxy.example/v1")
    reset = _ok(admin.patch(f"/v1/admin/providers/{openai['id']}", json={"base_url": None}))
    assert reset["base_url"] == "https://api.openai.com/v1"


def test_provider_unknown_ids_are_404(admin: httpx.Client) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        for pid in (NIL_ID, "not-a-uuid", NIL_ID.upper()):
            kwargs: dict[str, Any] = {"json": {"name": "x"}} if method == "PATCH" else {}
            assert_error(admin.request(method, f"/v1/admin/providers/{pid}", **kwargs), 404, "not_found", None)


def test_provider_delete_rules(admin: httpx.Client) -> None:
    provider = new_provider(admin)
    model = _ok(admin.post("/v1/admin/models", json=model_body(provider["id"])), 201)
    bad_request(admin.delete(f"/v1/admin/providers/{provider['id']}"), None)
    _ok(admin.delete(f"/v1/admin/models/{model['id']}"), 204)
    # Deleting the provider removes the platforms' LLM configs for it.
    tenant = new_platform(admin)
    pid, key = tenant["platform"]["id"], tenant["api_key"]["raw_key"]
    headers = {"Authorization": f"Bearer {key}"}
    config = _ok(
        admin.post(
            f"/v1/platforms/{pid}/llm-configs",
            json={"provider_id": provider["id"], "api_key": "sk-upstream-secret"},
            headers=headers,
        ),
        201,
    )
    _ok(admin.delete(f"/v1/admin/providers/{provider['id']}"), 204)
    assert_error(admin.get(f"/v1/admin/providers/{provider['id']}"), 404, "not_found", None)
    gone = admin.get(f"/v1/platforms/{pid}/llm-configs/{config['id']}", headers=headers)
    assert_error(gone, 404, "not_found", None)
    assert_error(admin.delete(f"/v1/admin/providers/{provider['id']}"), 404, "not_found", None)


# -- model rows -------------------------------------------------------------------------------------------------


def test_model_create_and_render(admin: httpx.Client) -> None:
    provider = new_provider(admin)
    body = model_body(provider["id"], cached_input_price_per_mtok="0.075", context_window=128000)
    created = _ok(admin.post("/v1/admin/models", json=body), 201)
    assert created["input_price_per_mtok"] == 0.15
    assert created["output_price_per_mtok"] == 0.6
    assert created["cached_input_price_per_mtok"] == 0.075
    assert created["price_per_image"] is None
    assert created["cache_write_price_per_mtok"] is None
    assert created["price_per_request"] is None
    assert created["priority"] == 100
    assert created["min_output_tokens"] is None
    assert created["max_output_tokens"] == 1000
    assert created["context_window"] == 128000
    assert created["is_active"] is True
    assert _ok(admin.get(f"/v1/admin/models/{created['id']}")) == created
    exact = admin.post("/v1/admin/models", json=model_body(provider["id"], input_price_per_mtok="0.000000001"))
    assert '"input_price_per_mtok":0.000000001' in exact.text
    free = _ok(admin.post("/v1/admin/models", json=model_body(provider["id"], input_price_per_mtok=0)), 201)
    assert free["input_price_per_mtok"] == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("slug", ""),
        ("slug", "has space"),
        ("slug", "x" * 129),
        ("upstream_model", ""),
        ("upstream_model", "u" * 257),
        ("input_price_per_mtok", -1),
        ("input_price_per_mtok", "abc"),
        ("input_price_per_mtok", True),
        ("input_price_per_mtok", None),
        ("output_price_per_mtok", "0.0000000001"),
        ("output_price_per_mtok", 1000000001),
        ("cached_input_price_per_mtok", "-0.1"),
        ("cache_write_price_per_mtok", "-0.1"),
        ("cache_write_price_per_mtok", "x"),
        ("price_per_request", -1),
        ("price_per_request", "0.0000000001"),
        ("priority", -1),
        ("priority", 1.5),
        ("priority", True),
        ("priority", "1"),
        ("min_output_tokens", 0),
        ("max_output_tokens", 0),
        ("max_output_tokens", None),
        ("context_window", 0),
        ("is_active", None),
        ("provider_id", NIL_ID),
        ("provider_id", "nope"),
        ("provider_id", 3),
    ],
)
def test_model_field_rules(admin: httpx.Client, field: str, value: Any) -> None:
    provider = new_provider(admin)
    bad_request(admin.post("/v1/admin/models", json={**model_body(provider["id"]), field: value}), field)


def test_model_cross_field_and_uniqueness_rules(admin: httpx.Client) -> None:
    provider = new_provider(admin)
    for missing in (
        "slug",
        "provider_id",
        "upstream_model",
        "input_price_per_mtok",
        "output_price_per_mtok",
        "max_output_tokens",
    ):
        body = model_body(provider["id"])
        del body[missing]
        bad_request(admin.post("/v1/admin/models", json=body), missing)
    bad_request(
        admin.post("/v1/admin/models", json=model_body(provider["id"], min_output_tokens=16, max_output_tokens=8)),
        "max_output_tokens",
    )
    bad_request(admin.post("/v1/admin/models", json={**model_body(provider["id"]), "extra": 1}), "extra")
    bad_request(admin.post("/v1/admin/models", json={**model_body(provider["id"]), "updated_at": None}), "updated_at")
    body = model_body(provider["id"])
    _ok(admin.post("/v1/admin/models", json=body), 201)
    bad_request(admin.post("/v1/admin/models", json=body), "slug")
    other = new_provider(admin)
    _ok(admin.post("/v1/admin/models", json={**body, "provider_id": other["id"]}), 201)


def test_model_price_per_image_only_for_image_kinds(admin: httpx.Client) -> None:
    for kind in ("openai", "openai_compatible", "asi1"):
        provider = new_provider(admin, kind)
        created = _ok(admin.post("/v1/admin/models", json=model_body(provider["id"], price_per_image="0.04")), 201)
        assert created["price_per_image"] == 0.04
    for kind in ("anthropic", "gemini"):
        provider = new_provider(admin, kind)
        body = model_body(provider["id"], price_per_image="0.04")
        bad_request(admin.post("/v1/admin/models", json=body), "price_per_image")
        created = _ok(admin.post("/v1/admin/models", json=model_body(provider["id"], price_per_image=None)), 201)
        bad_request(admin.patch(f"/v1/admin/models/{created['id']}", json={"price_per_image": 1}), "price_per_image")


def test_model_list_order_and_filters(admin: httpx.Client) -> None:
    first, second = new_provider(admin), new_provider(admin)
    slug = _slug("ordered")
    rows = [
        _ok(admin.post("/v1/admin/models", json=model_body(first["id"], slug=slug, priority=5)), 201),
        _ok(admin.post("/v1/admin/models", json=model_body(second["id"], slug=slug, priority=1)), 201),
        _ok(admin.post("/v1/admin/models", json=model_body(first["id"], slug=slug + "-b", priority=0)), 201),
    ]
    listing = _ok(admin.get("/v1/admin/models", params={"slug": slug}))
    assert [m["id"] for m in listing["data"]] == [rows[1]["id"], rows[0]["id"]]
    assert listing["total"] == 2
    by_provider = _ok(admin.get("/v1/admin/models", params={"provider_id": first["id"]}))
    assert [m["id"] for m in by_provider["data"]] == [rows[0]["id"], rows[2]["id"]]
    assert _ok(admin.get("/v1/admin/models", params={"provider_id": "garbage"}))["data"] == []


def test_model_patch_and_delete(admin: httpx.Client) -> None:
    provider = new_provider(admin)
    created = _ok(admin.post("/v1/admin/models", json=model_body(provider["id"], min_output_tokens=16)), 201)
    url = f"/v1/admin/models/{created['id']}"
    updated = _ok(
        admin.patch(
            url,
            json={
                "input_price_per_mtok": "2.5",
                "priority": 0,
                "is_active": False,
                "cached_input_price_per_mtok": "1.25",
                "context_window": None,
            },
        )
    )
    assert updated["input_price_per_mtok"] == 2.5
    assert updated["cached_input_price_per_mtok"] == 1.25
    assert updated["priority"] == 0
    assert updated["is_active"] is False
    assert updated["output_price_per_mtok"] == 0.6
    cleared = _ok(admin.patch(url, json={"cached_input_price_per_mtok": None}))
    assert cleared["cached_input_price_per_mtok"] is None
    priced = _ok(admin.patch(url, json={"cache_write_price_per_mtok": "3.75", "price_per_request": 0}))
    assert (priced["cache_write_price_per_mtok"], priced["price_per_request"]) == (3.75, 0)
    assert _ok(admin.get(url)) == priced
    unpriced = _ok(admin.patch(url, json={"cache_write_price_per_mtok": None, "price_per_request": None}))
    assert (unpriced["cache_write_price_per_mtok"], unpriced["price_per_request"]) == (None, None)
    bad_request(admin.patch(url, json={"slug": "renamed"}), "slug")
    bad_request(admin.patch(url, json={"provider_id": provider["id"]}), "provider_id")
    bad_request(admin.patch(url, json={"min_output_tokens": 2000}), "min_output_tokens")
    bad_request(admin.patch(url, json={"max_output_tokens": 8}), "max_output_tokens")
    bad_request(admin.patch(url, json={"input_price_per_mtok": None}), "input_price_per_mtok")
    bad_request(admin.patch(url, json={"bogus": 1}), "bogus")
    _ok(admin.delete(url), 204)
    assert_error(admin.get(url), 404, "not_found", None)
    assert_error(admin.delete(url), 404, "not_found", None)


# -- platforms --------------------------------------------------------------------------------------------------


def test_platform_create_shape(gateway: GatewayServer, admin: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    created = _ok(admin.post("/v1/admin/platforms", json={"name": f"  Acme Notes, Inc! {tag} "}), 201)
    platform, wallet, key = created["platform"], created["wallet"], created["api_key"]
    assert platform["slug"] == f"acme-notes-inc-{tag}"
    assert platform["settings"] == {
        "default_budget": None,
        "markup_percentage": 0,
        "rate_limits": {"rpm": None, "tpm": None, "rpd": None},
        "wallet_low_balance_threshold": None,
        "mcp_free_calls_per_month": 1000,
        "mcp_external_servers": False,
        "mcp_redirect_origins": [],
    }
    assert wallet["platform_id"] == platform["id"]
    assert wallet["balance_usd"] == 0
    assert wallet["held_usd"] == 0
    assert wallet["available_usd"] == 0
    assert wallet["currency"] == "usd"
    assert key["raw_key"].startswith("sk-plat_")
    assert len(key["raw_key"]) == len("sk-plat_") + 43
    assert key["key_prefix"] == key["raw_key"][:12]
    assert key["scopes"] == ["inference", "manage"]
    assert key["type"] == "platform"
    assert key["platform_id"] == platform["id"]
    headers = {"Authorization": f"Bearer {key['raw_key']}"}
    assert _ok(httpx.get(f"{gateway.url}/v1/platforms/{platform['id']}", headers=headers)) == platform
    again = _ok(admin.post("/v1/admin/platforms", json={"name": f"Acme Notes Inc {tag}"}), 201)
    assert again["platform"]["slug"] == f"acme-notes-inc-{tag}-2"
    third = _ok(admin.post("/v1/admin/platforms", json={"name": f"acme notes inc {tag}"}), 201)
    assert third["platform"]["slug"] == f"acme-notes-inc-{tag}-3"
    long = _ok(admin.post("/v1/admin/platforms", json={"name": "x" * 90 + tag}), 201)
    assert long["platform"]["slug"] == ("x" * 90 + tag)[:64]


def test_platform_create_rules(admin: httpx.Client) -> None:
    explicit = _slug("explicit")
    created = _ok(admin.post("/v1/admin/platforms", json={"name": "Explicit", "slug": explicit}), 201)
    assert created["platform"]["slug"] == explicit
    bad_request(admin.post("/v1/admin/platforms", json={"name": "Dup", "slug": explicit}), "slug")
    for slug in ("Upper", "-x", "a_b", "x" * 65, 12):
        bad_request(admin.post("/v1/admin/platforms", json={"name": "Bad", "slug": slug}), "slug")
    for name in ("", "n" * 101, None, 3):
        bad_request(admin.post("/v1/admin/platforms", json={"name": name}), "name")
    bad_request(admin.post("/v1/admin/platforms", json={}), "name")
    bad_request(admin.post("/v1/admin/platforms", json={"name": "x", "wallet": {}}), "wallet")
    bad_request(admin.post("/v1/admin/platforms", json={"name": "x", "id": NIL_ID}), "id")
    bad_request(admin.post("/v1/admin/platforms", json={"name": "x", "settings": None}), "settings")
    bad = {"name": "x", "settings": {"rate_limits": {"rpm": 0}}}
    bad_request(admin.post("/v1/admin/platforms", json=bad), "settings.rate_limits.rpm")
    good = {
        "name": "Configured",
        "settings": {
            "markup_percentage": 15,
            "default_budget": {"max_usd": 5, "period": "monthly"},
            "wallet_low_balance_threshold": "20",
        },
    }
    configured = _ok(admin.post("/v1/admin/platforms", json=good), 201)
    assert configured["platform"]["settings"]["markup_percentage"] == 15
    assert configured["platform"]["settings"]["default_budget"] == {"max_usd": 5, "period": "monthly"}
    assert configured["wallet"]["low_balance_threshold"] == 20


def test_platform_list_get_and_deleted_platforms(admin: httpx.Client) -> None:
    first, second = new_platform(admin), new_platform(admin)
    listing = _ok(admin.get("/v1/admin/platforms", params={"limit": 2}))
    assert [p["id"] for p in listing["data"]] == [second["platform"]["id"], first["platform"]["id"]]
    pid = first["platform"]["id"]
    detail = _ok(admin.get(f"/v1/admin/platforms/{pid}"))
    assert detail == {"platform": first["platform"], "wallet": first["wallet"]}
    headers = {"Authorization": f"Bearer {first['api_key']['raw_key']}"}
    _ok(admin.delete(f"/v1/platforms/{pid}", headers=headers), 204)
    assert_error(admin.get(f"/v1/admin/platforms/{pid}"), 404, "not_found", None)
    after = _ok(admin.get("/v1/admin/platforms", params={"limit": 100}))
    assert pid not in [p["id"] for p in after["data"]]
    assert_error(admin.post(f"/v1/admin/platforms/{pid}/api-keys", json={}), 404, "not_found", None)
    topup = admin.post(f"/v1/admin/platforms/{pid}/wallet/topup", json={"amount_usd": 1})
    assert_error(topup, 404, "not_found", None)
    assert_error(admin.get(f"/v1/admin/platforms/{NIL_ID}"), 404, "not_found", None)
    assert_error(admin.get("/v1/admin/platforms/xyz"), 404, "not_found", None)


def test_operator_recovery_key(gateway: GatewayServer, admin: httpx.Client) -> None:
    created = new_platform(admin)
    pid = created["platform"]["id"]
    key = _ok(admin.post(f"/v1/admin/platforms/{pid}/api-keys", json={"name": "recovery"}), 201)
    assert key["raw_key"].startswith("sk-plat_")
    assert key["name"] == "recovery"
    assert key["scopes"] == ["inference", "manage"]
    headers = {"Authorization": f"Bearer {key['raw_key']}"}
    _ok(httpx.get(f"{gateway.url}/v1/platforms/{pid}", headers=headers))
    bad_request(admin.post(f"/v1/admin/platforms/{pid}/api-keys", json={"scopes": ["admin"]}), "scopes[0]")
    past = {"expires_at": "2001-01-01T00:00:00Z"}
    bad_request(admin.post(f"/v1/admin/platforms/{pid}/api-keys", json=past), "expires_at")
    assert_error(admin.post(f"/v1/admin/platforms/{NIL_ID}/api-keys", json={}), 404, "not_found", None)


# -- wallet top-up ----------------------------------------------------------------------------------------------


def _transactions(gateway: GatewayServer, created: dict[str, Any]) -> dict[str, Any]:
    pid = created["platform"]["id"]
    headers = {"Authorization": f"Bearer {created['api_key']['raw_key']}"}
    return _ok(httpx.get(f"{gateway.url}/v1/platforms/{pid}/wallet/transactions", headers=headers))


def test_topup_arithmetic_is_exact(gateway: GatewayServer, admin: httpx.Client) -> None:
    created = new_platform(admin)
    pid = created["platform"]["id"]
    url = f"/v1/admin/platforms/{pid}/wallet/topup"
    first = admin.post(url, json={"amount_usd": "0.1", "description": "first", "metadata": {"invoice": "A-1"}})
    result = _ok(first)
    txn = result["transaction"]
    assert txn["type"] == "topup"
    assert txn["amount_usd"] == 0.1
    assert txn["balance_usd_after"] == 0.1
    assert txn["description"] == "first"
    assert txn["metadata"] == {"invoice": "A-1"}
    assert txn["wallet_id"] == created["wallet"]["id"]
    assert txn["request_id"] == first.headers["x-request-id"]
    second = admin.post(url, content=b'{"amount_usd": 0.2}', headers={"content-type": "application/json"})
    assert '"balance_usd":0.3,' in second.text
    assert '"balance_usd_after":0.3,' in second.text
    third = _ok(admin.post(url, content=b'{"amount_usd": 2e-9}', headers={"content-type": "application/json"}))
    assert third["wallet"]["balance_usd"] == 0.300000002
    big = _ok(admin.post(url, json={"amount_usd": 1000000000}))
    assert '"balance_usd":1000000000.300000002' in admin.get(f"/v1/admin/platforms/{pid}").text
    assert big["transaction"]["amount_usd"] == 1000000000
    listing = _transactions(gateway, created)
    assert listing["total"] == 4
    assert [t["amount_usd"] for t in listing["data"]] == [1000000000, 0.000000002, 0.2, 0.1]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"amount_usd": -1}',
        b'{"amount_usd": "-1"}',
        b'{"amount_usd": 0}',
        b'{"amount_usd": "0"}',
        b'{"amount_usd": 0.0}',
        b'{"amount_usd": "NaN"}',
        b'{"amount_usd": "Infinity"}',
        b'{"amount_usd": "1e400"}',
        b'{"amount_usd": 1e400}',
        b'{"amount_usd": 1e-400}',
        b'{"amount_usd": 0.0000000001}',
        b'{"amount_usd": "0.0000000001"}',
        b'{"amount_usd": 1000000000.000000001}',
        b'{"amount_usd": "1000000001"}',
        b'{"amount_usd": 1000000001}',
        b'{"amount_usd": true}',
        b'{"amount_usd": false}',
        b'{"amount_usd": null}',
        b'{"amount_usd": "abc"}',
        b'{"amount_usd": " 1"}',
        b'{"amount_usd": "1."}',
        b'{"amount_usd": [1]}',
        b'{"amount_usd": {"usd": 1}}',
        b"{}",
        b'{"amount_usd": 1, "currency": "usd"}',
        b'{"amount_usd": 1, "description": 5}',
        b'{"amount_usd": 1, "metadata": "x"}',
    ],
)
def test_topup_rejects_bad_amounts_without_writing(gateway: GatewayServer, admin: httpx.Client, raw: bytes) -> None:
    created = new_platform(admin)
    pid = created["platform"]["id"]
    response = admin.post(
        f"/v1/admin/platforms/{pid}/wallet/topup", content=raw, headers={"content-type": "application/json"}
    )
    expected = "amount_usd"
    for field in ("currency", "description", "metadata"):
        if field.encode() in raw:
            expected = field
    bad_request(response, expected)
    assert _transactions(gateway, created)["total"] == 0
    assert _ok(admin.get(f"/v1/admin/platforms/{pid}"))["wallet"]["balance_usd"] == 0


def test_topup_rejects_bad_json(admin: httpx.Client) -> None:
    pid = new_platform(admin)["platform"]["id"]
    url = f"/v1/admin/platforms/{pid}/wallet/topup"
    for raw in (b'{"amount_usd": NaN}', b'{"amount_usd": Infinity}', b"{", b'{"amount_usd": 1, "amount_usd": 2}'):
        response = admin.post(url, content=raw, headers={"content-type": "application/json"})
        assert_error(response, 400, "invalid_request", None)
    assert _ok(admin.get(f"/v1/admin/platforms/{pid}"))["wallet"]["balance_usd"] == 0


def test_concurrent_creates_and_topups(gateway: GatewayServer, admin: httpx.Client) -> None:
    name = f"Race {uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(lambda _: admin.post("/v1/admin/platforms", json={"name": name}), range(8)))
    slugs = {_ok(response, 201)["platform"]["slug"] for response in created}
    base = name.lower().replace(" ", "-")
    assert slugs == {base, *(f"{base}-{n}" for n in range(2, 9))}
    first = created[0].json()
    url = f"/v1/admin/platforms/{first['platform']['id']}/wallet/topup"
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: admin.post(url, json={"amount_usd": "0.1"}), range(20)))
    assert all(response.status_code == 200 for response in results)
    after = sorted(r.json()["transaction"]["balance_usd_after"] for r in results)
    assert after == [round(0.1 * n, 1) for n in range(1, 21)]
    assert _ok(admin.get(f"/v1/admin/platforms/{first['platform']['id']}"))["wallet"]["balance_usd"] == 2
    assert _transactions(gateway, first)["total"] == 20
