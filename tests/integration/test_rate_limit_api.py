"""Rate-limit overrides (SPEC §5.6) and ``/v1/me/rate-limits`` (§6) against a real gateway on SQLite and PostgreSQL:
strict bodies, 404 without an override and for other tenants' end users, and the resolution explicit, default or
none as overrides and platform defaults change."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.integration.test_platform_api import NIL_ID, Tenant, _ok, assert_error, bad_request, make_tenant, not_found
from tests.support.servers import GatewayServer


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


def _end_user(tenant: Tenant) -> tuple[str, str]:
    """A new end user of ``tenant``: (id, raw sk-eu_ key)."""
    body = {"external_id": f"user-{uuid.uuid4().hex[:10]}"}
    created = _ok(tenant.client.post(f"{tenant.base}/end-users", json=body), 201)
    return created["id"], created["api_key"]["raw_key"]


def _path(tenant: Tenant, end_user_id: str) -> str:
    return f"{tenant.base}/end-users/{end_user_id}/rate-limits"


def _me(gateway: GatewayServer, key: str) -> httpx.Response:
    return httpx.get(f"{gateway.url}/v1/me/rate-limits", headers={"Authorization": f"Bearer {key}"}, timeout=30)


# -- the override resource ---------------------------------------------------------------------------------------


def test_put_get_delete_override(tenant: Tenant) -> None:
    end_user_id, _ = _end_user(tenant)
    path = _path(tenant, end_user_id)
    not_found(tenant.client.get(path))
    put = _ok(tenant.client.put(path, json={"rpm_limit": 30, "tpm_limit": None, "rpd_limit": 1000}))
    assert set(put) == {"end_user_id", "rpm_limit", "tpm_limit", "rpd_limit", "updated_at"}
    assert (put["end_user_id"], put["rpm_limit"], put["tpm_limit"], put["rpd_limit"]) == (end_user_id, 30, None, 1000)
    assert put["updated_at"].endswith("Z") and datetime.fromisoformat(put["updated_at"])
    assert _ok(tenant.client.get(path)) == put
    # PUT replaces the whole override: an absent key counts as null.
    replaced = _ok(tenant.client.put(path, json={"tpm_limit": 10**9}))
    assert (replaced["rpm_limit"], replaced["tpm_limit"], replaced["rpd_limit"]) == (None, 10**9, None)
    assert replaced["updated_at"] >= put["updated_at"]
    empty = _ok(tenant.client.put(path, json={}))
    assert (empty["rpm_limit"], empty["tpm_limit"], empty["rpd_limit"]) == (None, None, None)
    response = tenant.client.delete(path)
    assert response.status_code == 204 and response.content == b""
    not_found(tenant.client.get(path))
    assert tenant.client.delete(path).status_code == 204  # nothing to remove is still done


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"rpm_limit": 0}, "rpm_limit"),
        ({"tpm_limit": -5}, "tpm_limit"),
        ({"rpd_limit": 10**9 + 1}, "rpd_limit"),
        ({"rpm_limit": "60"}, "rpm_limit"),
        ({"rpm_limit": True}, "rpm_limit"),
        ({"tpm_limit": 1.5}, "tpm_limit"),
        ({"rpm_limit": 60, "burst": 5}, "burst"),
        ({"end_user_id": NIL_ID}, "end_user_id"),
        ({"updated_at": "2026-05-01T00:00:00Z"}, "updated_at"),
    ],
)
def test_put_rejects_bad_bodies(tenant: Tenant, body: dict[str, Any], param: str) -> None:
    end_user_id, _ = _end_user(tenant)
    bad_request(tenant.client.put(_path(tenant, end_user_id), json=body), param)
    not_found(tenant.client.get(_path(tenant, end_user_id)))  # nothing was written


def test_put_needs_a_json_object(tenant: Tenant) -> None:
    end_user_id, _ = _end_user(tenant)
    path = _path(tenant, end_user_id)
    bad_request(tenant.client.put(path, json=[1, 2]), None)
    response = tenant.client.put(path, content=b"{}", headers={"Content-Type": "text/plain"})
    assert_error(response, 400, "invalid_request", "Content-Type")


def test_other_tenants_and_unknown_end_users_are_404(tenant: Tenant, other: Tenant) -> None:
    theirs, _ = _end_user(other)
    _ok(other.client.put(_path(other, theirs), json={"rpm_limit": 5}))
    for path in (_path(tenant, theirs), _path(tenant, NIL_ID), _path(tenant, "not-a-uuid")):
        not_found(tenant.client.get(path))
        not_found(tenant.client.put(path, json={"rpm_limit": 1}))
        not_found(tenant.client.delete(path))
    # A foreign platform id in the path is 404 too, and the override is untouched.
    not_found(tenant.client.get(_path(other, theirs)))
    not_found(tenant.client.put(_path(other, theirs), json={"bogus": 1}))  # 404 before the body is judged
    assert _ok(other.client.get(_path(other, theirs)))["rpm_limit"] == 5


def test_deleted_end_user_has_no_override(tenant: Tenant) -> None:
    end_user_id, _ = _end_user(tenant)
    _ok(tenant.client.put(_path(tenant, end_user_id), json={"rpm_limit": 5}))
    assert tenant.client.delete(f"{tenant.base}/end-users/{end_user_id}").status_code == 204
    not_found(tenant.client.get(_path(tenant, end_user_id)))
    not_found(tenant.client.put(_path(tenant, end_user_id), json={"rpm_limit": 6}))
    not_found(tenant.client.delete(_path(tenant, end_user_id)))


def test_end_user_key_on_the_platform_route_is_wrong_key_type(gateway: GatewayServer, tenant: Tenant) -> None:
    end_user_id, key = _end_user(tenant)
    response = httpx.get(
        f"{gateway.url}{_path(tenant, end_user_id)}", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert_error(response, 403, "wrong_key_type", None)


# -- /v1/me/rate-limits ------------------------------------------------------------------------------------------


def test_me_rate_limits_resolution(gateway: GatewayServer, admin: httpx.Client) -> None:
    platform = make_tenant(gateway, admin)
    try:
        end_user_id, key = _end_user(platform)
        none = {"rpm_limit": None, "tpm_limit": None, "rpd_limit": None, "resolution": "none"}
        assert _ok(_me(gateway, key)) == none
        rate_limits = {"rpm": 60, "tpm": 200_000, "rpd": None}
        _ok(platform.client.patch(platform.base, json={"settings": {"rate_limits": rate_limits}}))
        default = {"rpm_limit": 60, "tpm_limit": 200_000, "rpd_limit": None, "resolution": "default"}
        assert _ok(_me(gateway, key)) == default
        _ok(platform.client.put(_path(platform, end_user_id), json={"rpm_limit": 30, "rpd_limit": 1000}))
        explicit = {"rpm_limit": 30, "tpm_limit": 200_000, "rpd_limit": 1000, "resolution": "explicit"}
        assert _ok(_me(gateway, key)) == explicit
        # An override row whose limits are all null still makes the resolution explicit; the values inherit.
        _ok(platform.client.put(_path(platform, end_user_id), json={}))
        assert _ok(_me(gateway, key)) == {**default, "resolution": "explicit"}
        assert platform.client.delete(_path(platform, end_user_id)).status_code == 204
        assert _ok(_me(gateway, key)) == default
        # Another end user of the platform is unaffected by this one's override.
        _ok(platform.client.put(_path(platform, end_user_id), json={"tpm_limit": 5}))
        _, other_key = _end_user(platform)
        assert _ok(_me(gateway, other_key)) == default
    finally:
        platform.client.close()


def test_me_rate_limits_needs_an_end_user_key(gateway: GatewayServer, tenant: Tenant) -> None:
    assert_error(_me(gateway, tenant.key), 403, "wrong_key_type", None)
    assert_error(_me(gateway, "sk-eu_" + "x" * 43), 401, "invalid_api_key", None)
