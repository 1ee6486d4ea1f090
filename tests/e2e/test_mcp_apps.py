"""MCP apps and end users' OAuth connections (SPEC §16.1, §16.2) against the gateway served by uvicorn on SQLite and
PostgreSQL, with a real OAuth 2.1 authorization server (tests/support/oauth_server.py) on another port. The browser
is played by httpx, one redirect at a time, so every hop is asserted."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.oauth_server import OAuthServer
from tests.support.servers import GatewayServer

HEADER_VALUE = "Bearer hv-" + uuid.uuid4().hex


@dataclass
class Platform:
    id: str
    client: httpx.Client

    @property
    def base(self) -> str:
        return f"/v1/platforms/{self.id}"


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _error(response: httpx.Response, status: int, code: str, param: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error


def make_platform(gateway: GatewayServer, admin: httpx.Client, **settings: Any) -> Platform:
    body: dict[str, Any] = {"name": f"Mcp {uuid.uuid4().hex[:8]}"}
    if settings:
        body["settings"] = settings
    created = _ok(admin.post("/v1/admin/platforms", json=body), 201)
    key = created["api_key"]["raw_key"]
    client = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Platform(created["platform"]["id"], client)


def make_end_user(gateway: GatewayServer, platform: Platform) -> tuple[str, httpx.Client]:
    created = _ok(platform.client.post(f"{platform.base}/end-users", json={"external_id": uuid.uuid4().hex}), 201)
    key = created["api_key"]["raw_key"]
    return created["id"], httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def oauth_app_body(oauth: OAuthServer, slug: str, **extra: Any) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": "Notes",
        "server_url": "http://127.0.0.1:9/mcp",
        "auth": {
            "type": "oauth2",
            "authorize_url": oauth.authorize_url,
            "token_url": oauth.token_url,
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret,
            "scopes": ["notes.read", "notes.write"],
            "revocation_url": oauth.revocation_url,
        },
        **extra,
    }


@pytest.fixture(scope="module")
def platform(gateway: GatewayServer, admin: httpx.Client, oauth: OAuthServer) -> Iterator[Platform]:
    tenant = make_platform(gateway, admin, mcp_redirect_origins=[oauth.url])
    yield tenant
    tenant.client.close()


@pytest.fixture(scope="module")
def notes(platform: Platform, oauth: OAuthServer) -> dict[str, Any]:
    return _ok(platform.client.post(f"{platform.base}/mcp/apps", json=oauth_app_body(oauth, "notes")), 201)


def assert_no_secrets(oauth: OAuthServer, *texts: str) -> None:
    """No client secret, header value or token the OAuth server issued appears anywhere in ``texts``."""
    secrets = [oauth.client_secret, HEADER_VALUE.split()[1], *oauth.issued]
    for text in texts:
        for secret in secrets:
            assert secret not in text


def connect(end_user: httpx.Client, slug: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    path = f"/v1/me/mcp/apps/{slug}/connect"
    response = end_user.post(path, json=body) if body else end_user.post(path)
    return _ok(response)  # type: ignore[no-any-return]


def authorize(oauth: OAuthServer, authorize_url: str) -> str:
    """The user approves at the authorization server: the callback URL it redirects the browser to."""
    assert authorize_url.startswith(oauth.authorize_url + "?")
    hop = httpx.get(authorize_url, follow_redirects=False)
    assert hop.status_code == 302, hop.text
    return hop.headers["location"]


# -- apps ------------------------------------------------------------------------------------------------------


def test_app_crud_shapes_and_secrets_never_returned(platform: Platform, oauth: OAuthServer) -> None:
    apps = f"{platform.base}/mcp/apps"
    created = _ok(platform.client.post(apps, json=oauth_app_body(oauth, "crud-notes")), 201)
    assert set(created) == {
        "id", "platform_id", "slug", "name", "server_url", "auth", "has_secret", "price_per_call_usd",
        "allowed_tools", "is_active", "created_at", "updated_at",
    }  # fmt: skip
    assert created["auth"] == {
        "type": "oauth2",
        "authorize_url": oauth.authorize_url,
        "token_url": oauth.token_url,
        "client_id": oauth.client_id,
        "scopes": ["notes.read", "notes.write"],
        "revocation_url": oauth.revocation_url,
    }
    assert created["has_secret"] is True
    assert created["price_per_call_usd"] == 0.001
    assert created["allowed_tools"] is None and created["is_active"] is True
    header = _ok(
        platform.client.post(
            apps,
            json={
                "slug": "crud-header",
                "name": "Search",
                "server_url": "http://127.0.0.1:9/mcp",
                "auth": {"type": "header", "name": "Authorization", "value": HEADER_VALUE},
                "price_per_call_usd": "0.0125",
                "allowed_tools": ["search", "fetch"],
                "is_active": False,
            },
        ),
        201,
    )
    assert header["auth"] == {"type": "header", "name": "Authorization"}
    assert header["has_secret"] is True and header["price_per_call_usd"] == 0.0125
    assert header["allowed_tools"] == ["search", "fetch"] and header["is_active"] is False
    none = _ok(
        platform.client.post(
            apps,
            json={
                "slug": "crud-none",
                "name": "Time",
                "server_url": "http://127.0.0.1:9/mcp",
                "auth": {"type": "none"},
            },
        ),
        201,
    )
    assert none["auth"] == {"type": "none"} and none["has_secret"] is False
    # PATCH: auth of the same type without its secret keeps the stored one; other fields change alone.
    patched = _ok(
        platform.client.patch(
            f"{apps}/{created['id']}",
            json={"auth": {**{k: v for k, v in oauth_app_body(oauth, "x")["auth"].items() if k != "client_secret"},
                           "scopes": ["notes.read"]}, "price_per_call_usd": 0, "allowed_tools": ["list"]},
        )
    )  # fmt: skip
    assert patched["auth"]["scopes"] == ["notes.read"] and patched["has_secret"] is True
    assert patched["price_per_call_usd"] == 0 and patched["allowed_tools"] == ["list"]
    cleared = _ok(platform.client.patch(f"{apps}/{header['id']}", json={"auth": {"type": "none"}}))
    assert cleared["has_secret"] is False and cleared["auth"] == {"type": "none"}
    listed = _ok(platform.client.get(apps, params={"limit": 100}))
    slugs = [app["slug"] for app in listed["data"]]
    assert {"crud-notes", "crud-header", "crud-none"} <= set(slugs)
    assert _ok(platform.client.get(f"{apps}/{created['id']}")) == patched
    texts = [r.text for r in (platform.client.get(apps), platform.client.get(f"{apps}/{created['id']}"))]
    assert_no_secrets(oauth, *texts, str(created), str(header), str(patched))
    for app in (created, header, none):
        assert platform.client.delete(f"{apps}/{app['id']}").status_code == 204
        _error(platform.client.get(f"{apps}/{app['id']}"), 404, "not_found", None)
        _error(platform.client.delete(f"{apps}/{app['id']}"), 404, "not_found", None)
    # The slug is free again once its app is deleted.
    again = _ok(platform.client.post(apps, json=oauth_app_body(oauth, "crud-notes")), 201)
    assert platform.client.delete(f"{apps}/{again['id']}").status_code == 204


def _auth(oauth: OAuthServer, **change: Any) -> dict[str, Any]:
    auth = dict(oauth_app_body(oauth, "x")["auth"])
    auth.update(change)
    return {k: v for k, v in auth.items() if v is not ...}


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"slug": "Notes"}, "slug"),
        ({"slug": "-notes"}, "slug"),
        ({"slug": "n" * 64}, "slug"),
        ({"slug": 5}, "slug"),
        ({"name": ""}, "name"),
        ({"server_url": "ftp://127.0.0.1/mcp"}, "server_url"),
        ({"server_url": "http://user:pw@127.0.0.1/mcp"}, "server_url"),
        ({"server_url": "not a url"}, "server_url"),
        ({"auth": {"type": "basic"}}, "auth.type"),
        ({"auth": "none"}, "auth"),
        ({"auth": {"type": "none", "value": "x"}}, "auth.value"),
        ({"auth": {"type": "header", "value": "x"}}, "auth.name"),
        ({"auth": {"type": "header", "name": "X Key", "value": "x"}}, "auth.name"),
        ({"auth": {"type": "header", "name": "X-Key"}}, "auth.value"),
        ({"auth": {"type": "header", "name": "X-Key", "value": "a\nb"}}, "auth.value"),
        ("no-secret", "auth.client_secret"),
        ("no-scopes", "auth.scopes"),
        ("scope-space", "auth.scopes[0]"),
        ("scope-number", "auth.scopes[1]"),
        ("scope-repeated", "auth.scopes[2]"),
        ("bad-token-url", "auth.token_url"),
        ("bad-revocation-url", "auth.revocation_url"),
        ("unknown-auth-field", "auth.audience"),
        ({"price_per_call_usd": -1}, "price_per_call_usd"),
        ({"price_per_call_usd": "0.0000000001"}, "price_per_call_usd"),
        ({"price_per_call_usd": True}, "price_per_call_usd"),
        ({"price_per_call_usd": "1000000001"}, "price_per_call_usd"),
        ({"allowed_tools": "search"}, "allowed_tools"),
        ({"allowed_tools": ["ok", 3]}, "allowed_tools[1]"),
        ({"allowed_tools": [""]}, "allowed_tools[0]"),
        ({"allowed_tools": ["search", "fetch", "search"]}, "allowed_tools[2]"),  # as scopes: a 400, never merged
        ({"is_active": "yes"}, "is_active"),
        ({"has_secret": False}, "has_secret"),
        ({"platform_id": "x"}, "platform_id"),
        ({"color": "red"}, "color"),
    ],
)
def test_app_validation_names_the_field(
    platform: Platform, oauth: OAuthServer, change: dict[str, Any] | str, param: str
) -> None:
    body = oauth_app_body(oauth, "valid-" + uuid.uuid4().hex[:8])
    if isinstance(change, dict):
        body.update(change)
    else:
        body["auth"] = {
            "no-secret": _auth(oauth, client_secret=...),
            "no-scopes": _auth(oauth, scopes=...),
            "scope-space": _auth(oauth, scopes=["a b"]),
            "scope-number": _auth(oauth, scopes=["a", 2]),
            "scope-repeated": _auth(oauth, scopes=["a", "b", "a"]),  # as API keys' scopes: a 400, never merged
            "bad-token-url": _auth(oauth, token_url="gopher://127.0.0.1/token"),
            "bad-revocation-url": _auth(oauth, revocation_url="nope"),
            "unknown-auth-field": _auth(oauth, audience="x"),
        }[change]
    before = _ok(platform.client.get(f"{platform.base}/mcp/apps"))["total"]
    response = platform.client.post(f"{platform.base}/mcp/apps", json=body)
    _error(response, 400, "invalid_request", param)
    assert_no_secrets(oauth, response.text)
    assert _ok(platform.client.get(f"{platform.base}/mcp/apps"))["total"] == before


def test_slug_unique_per_platform_and_patch_rules(
    gateway: GatewayServer, admin: httpx.Client, platform: Platform, oauth: OAuthServer, notes: dict[str, Any]
) -> None:
    apps = f"{platform.base}/mcp/apps"
    _error(platform.client.post(apps, json=oauth_app_body(oauth, "notes")), 400, "invalid_request", "slug")
    other = _ok(platform.client.post(apps, json=oauth_app_body(oauth, "notes-two")), 201)
    _error(platform.client.patch(f"{apps}/{other['id']}", json={"slug": "notes"}), 400, "invalid_request", "slug")
    # Switching the type needs the new type's secret.
    switch = {"auth": {"type": "header", "name": "X-Key"}}
    _error(platform.client.patch(f"{apps}/{other['id']}", json=switch), 400, "invalid_request", "auth.value")
    # A repeated tool name is a 400 naming the repeat, and nothing changes.
    repeated = {"name": "Renamed", "allowed_tools": ["list", "list"]}
    _error(platform.client.patch(f"{apps}/{other['id']}", json=repeated), 400, "invalid_request", "allowed_tools[1]")
    kept = _ok(platform.client.get(f"{apps}/{other['id']}"))
    assert (kept["name"], kept["allowed_tools"]) == (other["name"], None)
    assert platform.client.delete(f"{apps}/{other['id']}").status_code == 204
    # Another platform may use the same slug.
    second = make_platform(gateway, admin)
    try:
        _ok(second.client.post(f"{second.base}/mcp/apps", json=oauth_app_body(oauth, "notes")), 201)
    finally:
        second.client.close()


def test_private_server_urls_are_refused_without_the_setting(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.conftest import make_settings
    from tests.support.servers import running_gateway

    tmp = tmp_path_factory.mktemp("strict")
    settings = make_settings(tmp, f"sqlite:///{tmp / 'db.sqlite'}", allow_private_urls=False)
    with running_gateway(settings) as gateway:
        admin = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {settings.admin_key}"})
        tenant = make_platform(gateway, admin)
        body = {"slug": "local", "name": "Local", "server_url": "https://127.0.0.1/mcp", "auth": {"type": "none"}}
        _error(tenant.client.post(f"{tenant.base}/mcp/apps", json=body), 400, "invalid_request", "server_url")
        body["server_url"] = "http://mcp.example.com/mcp"
        _error(tenant.client.post(f"{tenant.base}/mcp/apps", json=body), 400, "invalid_request", "server_url")
        body["server_url"] = "https://[::1]/mcp"
        _error(tenant.client.post(f"{tenant.base}/mcp/apps", json=body), 400, "invalid_request", "server_url")
        tenant.client.close()
        admin.close()


# -- tenancy and key kinds ---------------------------------------------------------------------------------------


def test_one_platform_never_sees_or_touches_anothers_apps_and_connections(
    gateway: GatewayServer, admin: httpx.Client, platform: Platform, oauth: OAuthServer, notes: dict[str, Any]
) -> None:
    end_user_id, end_user = make_end_user(gateway, platform)
    location = authorize(oauth, connect(end_user, "notes")["authorize_url"])
    assert httpx.get(location, follow_redirects=False).status_code == 200
    stranger = make_platform(gateway, admin)
    try:
        foreign = f"{stranger.base}/mcp/apps/{notes['id']}"
        _error(stranger.client.get(foreign), 404, "not_found", None)
        _error(stranger.client.patch(foreign, json={"name": "Mine"}), 404, "not_found", None)
        _error(stranger.client.delete(foreign), 404, "not_found", None)
        assert all(app["id"] != notes["id"] for app in _ok(stranger.client.get(f"{stranger.base}/mcp/apps"))["data"])
        seen = _ok(stranger.client.get(f"{stranger.base}/mcp/connections", params={"end_user_id": end_user_id}))
        assert seen["data"] == [] and seen["total"] == 0
        assert _ok(stranger.client.get(f"{stranger.base}/mcp/connections"))["total"] == 0
        # The stranger's key on the owner's paths: 404, indistinguishable from a missing platform.
        _error(stranger.client.get(f"{platform.base}/mcp/apps"), 404, "not_found", None)
        _error(stranger.client.get(f"{platform.base}/mcp/connections"), 404, "not_found", None)
        # An end user of the stranger cannot connect to the owner's app, nor see it in its config.
        _, outsider = make_end_user(gateway, stranger)
        _error(outsider.post("/v1/me/mcp/apps/notes/connect"), 404, "not_found", None)
        assert _ok(outsider.get("/v1/me/mcp-config")) == {"apps": []}
        _error(outsider.delete("/v1/me/mcp/apps/notes/connection"), 404, "not_found", None)
        outsider.close()
    finally:
        stranger.client.close()
        end_user.close()
    mine = _ok(platform.client.get(f"{platform.base}/mcp/connections", params={"end_user_id": end_user_id}))
    assert [c["app_slug"] for c in mine["data"]] == ["notes"]


def test_me_routes_need_an_end_user_key_and_apps_a_manage_key(
    gateway: GatewayServer, platform: Platform, notes: dict[str, Any]
) -> None:
    _error(platform.client.post("/v1/me/mcp/apps/notes/connect"), 403, "wrong_key_type", None)
    _error(platform.client.get("/v1/me/mcp-config"), 403, "wrong_key_type", None)
    _error(platform.client.delete("/v1/me/mcp/apps/notes/connection"), 403, "wrong_key_type", None)
    _, end_user = make_end_user(gateway, platform)
    _error(end_user.get(f"{platform.base}/mcp/apps"), 403, "wrong_key_type", None)
    _error(end_user.get(f"{platform.base}/mcp/connections"), 403, "wrong_key_type", None)
    _error(httpx.get(gateway.url + "/v1/me/mcp-config"), 401, "invalid_api_key", None)
    end_user.close()


# -- the connection flow -----------------------------------------------------------------------------------------


def test_full_connect_flow(
    gateway: GatewayServer,
    platform: Platform,
    oauth: OAuthServer,
    notes: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    end_user_id, end_user = make_end_user(gateway, platform)
    before = _ok(end_user.get("/v1/me/mcp-config"))["apps"]
    assert [a for a in before if a["slug"] == "notes"] == [
        {"slug": "notes", "name": "Notes", "server_url": f"{gateway.url}/v1/mcp/notes", "auth": "oauth2",
         "connected": False, "connected_at": None, "allowed_tools": None}
    ]  # fmt: skip
    landing = f"{oauth.url}/landing?tab=apps"
    started = connect(end_user, "notes", {"redirect_uri": landing})
    assert set(started) == {"authorize_url", "expires_at"}
    query = parse_qs(urlsplit(started["authorize_url"]).query)
    callback = f"{gateway.url}/v1/mcp/oauth/callback"
    assert query["client_id"] == [oauth.client_id] and query["redirect_uri"] == [callback]
    assert query["response_type"] == ["code"] and query["code_challenge_method"] == ["S256"]
    assert query["scope"] == ["notes.read notes.write"] and len(query["state"][0]) >= 32
    assert len(query["code_challenge"][0]) == 43
    location = authorize(oauth, started["authorize_url"])
    assert location.startswith(callback + "?")
    back = httpx.get(location, follow_redirects=False)
    assert back.status_code == 303, back.text
    assert back.headers["location"] == f"{landing}&mcp_app=notes&status=connected"
    config = _ok(end_user.get("/v1/me/mcp-config"))["apps"]
    entry = next(a for a in config if a["slug"] == "notes")
    assert entry["connected"] is True and entry["connected_at"].endswith("Z")
    listed = _ok(platform.client.get(f"{platform.base}/mcp/connections", params={"end_user_id": end_user_id}))
    assert listed["total"] == 1
    assert listed["data"][0] == {
        "app_slug": "notes",
        "end_user_id": end_user_id,
        "status": "connected",
        "connected_at": entry["connected_at"],
        "scopes": ["notes.read", "notes.write"],
    }
    # Without a redirect_uri the callback answers a short page.
    again = authorize(oauth, connect(end_user, "notes")["authorize_url"])
    page = httpx.get(again, follow_redirects=False)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "notes is connected" in page.text
    # Reconnecting replaced the connection: still one row.
    assert (
        _ok(platform.client.get(f"{platform.base}/mcp/connections", params={"end_user_id": end_user_id}))["total"] == 1
    )
    texts = [back.text, page.text, str(started), str(config), str(listed), location, back.headers["location"]]
    assert_no_secrets(oauth, *texts, caplog.text)
    end_user.close()


def test_reused_forged_and_mismatched_state_is_400_and_stores_nothing(
    gateway: GatewayServer, platform: Platform, oauth: OAuthServer, notes: dict[str, Any]
) -> None:
    end_user_id, end_user = make_end_user(gateway, platform)
    location = authorize(oauth, connect(end_user, "notes")["authorize_url"])
    params = parse_qs(urlsplit(location).query)
    code, state = params["code"][0], params["state"][0]
    callback = f"{gateway.url}/v1/mcp/oauth/callback"
    exchanges = oauth.exchanges
    _error(httpx.get(callback, params={"code": code, "state": state + "x"}), 400, "invalid_request", "state")
    _error(httpx.get(callback, params={"code": code}), 400, "invalid_request", "state")
    assert oauth.exchanges == exchanges
    listed = f"{platform.base}/mcp/connections"
    assert _ok(platform.client.get(listed, params={"end_user_id": end_user_id}))["total"] == 0
    assert httpx.get(location, follow_redirects=False).status_code == 200  # the real one connects ...
    assert oauth.exchanges == exchanges + 1
    _error(httpx.get(location, follow_redirects=False), 400, "invalid_request", "state")  # ... once
    assert oauth.exchanges == exchanges + 1
    assert _ok(platform.client.get(listed, params={"end_user_id": end_user_id}))["total"] == 1
    end_user.close()


def test_refused_authorization_redirects_with_the_error_and_stores_nothing(
    gateway: GatewayServer, platform: Platform, oauth: OAuthServer, notes: dict[str, Any]
) -> None:
    end_user_id, end_user = make_end_user(gateway, platform)
    oauth.deny = True
    try:
        started = connect(end_user, "notes", {"redirect_uri": f"{oauth.url}/done"})
        back = httpx.get(authorize(oauth, started["authorize_url"]), follow_redirects=False)
    finally:
        oauth.deny = False
    assert back.status_code == 303
    assert back.headers["location"] == f"{oauth.url}/done?mcp_app=notes&status=error&error=access_denied"
    listed = _ok(platform.client.get(f"{platform.base}/mcp/connections", params={"end_user_id": end_user_id}))
    assert listed["total"] == 0
    end_user.close()


@pytest.mark.parametrize(
    "redirect_uri",
    ["https://evil.example/cb", "http://127.0.0.1:1/cb", "/relative", "javascript:alert(1)", "https://a.example/#x", 5],
)
def test_redirect_uri_outside_the_platform_origins_is_refused(
    gateway: GatewayServer, platform: Platform, notes: dict[str, Any], redirect_uri: object
) -> None:
    _, end_user = make_end_user(gateway, platform)
    response = end_user.post("/v1/me/mcp/apps/notes/connect", json={"redirect_uri": redirect_uri})
    _error(response, 400, "invalid_request", "redirect_uri")
    end_user.close()


def test_connect_refuses_unknown_inactive_and_non_oauth_apps(
    gateway: GatewayServer, platform: Platform, notes: dict[str, Any]
) -> None:
    apps = f"{platform.base}/mcp/apps"
    plain = {"name": "Plain", "server_url": "http://127.0.0.1:9/mcp", "auth": {"type": "none"}}
    none_app = _ok(platform.client.post(apps, json={"slug": "plain", **plain}), 201)
    idle = _ok(platform.client.post(apps, json={"slug": "idle", "is_active": False, **plain}), 201)
    _, end_user = make_end_user(gateway, platform)
    _error(end_user.post("/v1/me/mcp/apps/nope/connect"), 404, "not_found", None)
    for odd in ("NOTES", "no%00tes", "%E2%9C%93"):
        _error(end_user.post(f"/v1/me/mcp/apps/{odd}/connect"), 404, "not_found", None)
        _error(end_user.delete(f"/v1/me/mcp/apps/{odd}/connection"), 404, "not_found", None)
    _error(end_user.post("/v1/me/mcp/apps/idle/connect"), 404, "not_found", None)
    _error(end_user.post("/v1/me/mcp/apps/plain/connect"), 400, "invalid_request", None)
    _error(end_user.post("/v1/me/mcp/apps/notes/connect", json={"scope": "x"}), 400, "invalid_request", "scope")
    config = {a["slug"]: a for a in _ok(end_user.get("/v1/me/mcp-config"))["apps"]}
    assert "idle" not in config
    assert config["plain"]["auth"] == "none" and config["plain"]["connected"] is True
    for app in (none_app, idle):
        assert platform.client.delete(f"{apps}/{app['id']}").status_code == 204
    end_user.close()


def test_disconnect_revokes_at_the_server_and_deletes(
    gateway: GatewayServer, platform: Platform, oauth: OAuthServer, notes: dict[str, Any]
) -> None:
    end_user_id, end_user = make_end_user(gateway, platform)
    issued_before = len(oauth.issued)
    assert httpx.get(authorize(oauth, connect(end_user, "notes")["authorize_url"])).status_code == 200
    access, refresh = oauth.issued[issued_before : issued_before + 2]
    assert oauth.is_valid(access)
    assert end_user.delete("/v1/me/mcp/apps/notes/connection").status_code == 204
    assert (refresh, "refresh_token") in oauth.revoked and (access, "access_token") in oauth.revoked
    assert not oauth.is_valid(access)
    entry = next(a for a in _ok(end_user.get("/v1/me/mcp-config"))["apps"] if a["slug"] == "notes")
    assert entry["connected"] is False and entry["connected_at"] is None
    listed = _ok(platform.client.get(f"{platform.base}/mcp/connections", params={"end_user_id": end_user_id}))
    assert listed["total"] == 0
    _error(end_user.delete("/v1/me/mcp/apps/notes/connection"), 404, "not_found", None)
    end_user.close()


def test_deleting_an_app_deletes_its_connections(
    gateway: GatewayServer, platform: Platform, oauth: OAuthServer
) -> None:
    app = _ok(platform.client.post(f"{platform.base}/mcp/apps", json=oauth_app_body(oauth, "gone")), 201)
    end_user_id, end_user = make_end_user(gateway, platform)
    assert httpx.get(authorize(oauth, connect(end_user, "gone")["authorize_url"])).status_code == 200
    listed = f"{platform.base}/mcp/connections"
    assert _ok(platform.client.get(listed, params={"end_user_id": end_user_id}))["total"] == 1
    assert platform.client.delete(f"{platform.base}/mcp/apps/{app['id']}").status_code == 204
    assert _ok(platform.client.get(listed, params={"end_user_id": end_user_id}))["total"] == 0
    assert all(a["slug"] != "gone" for a in _ok(end_user.get("/v1/me/mcp-config"))["apps"])
    end_user.close()
