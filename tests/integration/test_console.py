"""The console over HTTP (SPEC §17.1, §15), on SQLite and PostgreSQL: sign-in for each kind of key, the session
cookie's flags, CSRF and Origin checks, the security headers on every page, tenant isolation, sessions that end with
their key, and actions that go through the API's services (same errors, same effects)."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.conftest import make_settings
from tests.integration.test_card_topups import stripe_secrets
from tests.support.console import ConsoleClient, csrf_of, error_of, form_fields, secret_of
from tests.support.fake_stripe import FakeStripe
from tests.support.oauth_server import OAuthServer
from tests.support.servers import GatewayServer, running_gateway
from tests.support.stripe_signing import signed
from tollway.demo import seed, seed_history
from tollway.fake_upstream.server import FakeUpstreamThread

UNUSED_MCP_URL = "http://127.0.0.1:9/mcp"  # the demo's MCP app; these tests never call it


@dataclass(frozen=True)
class Demo:
    url: str
    admin_key: str
    seeded: dict[str, str]
    other_platform_id: str
    other_key: str

    def api(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture(scope="module")
def demo(gateway: GatewayServer, admin: httpx.Client, fake_upstream: FakeUpstreamThread) -> Demo:
    assert gateway.settings.admin_key is not None
    seeded = asyncio.run(seed(gateway.url, gateway.settings.admin_key, fake_upstream.base_url, UNUSED_MCP_URL))
    asyncio.run(seed_history(gateway.settings, seeded))
    other = admin.post("/v1/admin/platforms", json={"name": "Other Co"}).json()
    return Demo(gateway.url, gateway.settings.admin_key, seeded, other["platform"]["id"], other["api_key"]["raw_key"])


@pytest.fixture
def platform_console(demo: Demo) -> Iterator[ConsoleClient]:
    with ConsoleClient(demo.url) as client:
        assert client.sign_in(demo.seeded["platform_key"]).status_code == 303
        yield client


def _cookie_header(response: httpx.Response, name: str) -> str:
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(headers) == 1, response.headers.get_list("set-cookie")
    return headers[0]


PAGES = {
    "operator": ["/console", "/console/providers", "/console/models", "/console/reconcile"],
    "platform": [
        "/console", "/console/wallet", "/console/end-users", "/console/keys", "/console/llm-configs",
        "/console/models", "/console/logs", "/console/webhooks", "/console/mcp-apps",
    ],
    "end_user": ["/console", "/console/usage", "/console/keys", "/console/mcp"],
}  # fmt: skip


@pytest.mark.parametrize("kind", ["operator", "platform", "end_user"])
def test_each_kind_of_key_signs_in_and_every_page_carries_the_security_headers(demo: Demo, kind: str) -> None:
    key = {
        "operator": demo.admin_key,
        "platform": demo.seeded["platform_key"],
        "end_user": demo.seeded["end_user_key"],
    }[kind]
    with ConsoleClient(demo.url) as client:
        signed_in = client.sign_in(key)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/console"
        cookie = _cookie_header(signed_in, "tollway_session").lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
        assert "secure" not in cookie  # plain http here; see the https test below
        assert key not in signed_in.text and key not in cookie  # the key never travels back to the browser
        for path in PAGES[kind]:
            page = client.get(path)
            assert page.status_code == 200, (path, page.text[:300])
            assert page.headers["content-security-policy"].startswith("default-src 'self'")
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
            assert page.headers["x-content-type-options"] == "nosniff"
            assert page.headers["referrer-policy"] == "same-origin"
            assert page.headers["cache-control"] == "no-store"
            assert "style=" not in page.text and not re.search(r"<script(?![^>]*\bsrc=)", page.text)
            assert key not in page.text


def test_static_files_and_error_pages_carry_the_headers_too(demo: Demo, platform_console: ConsoleClient) -> None:
    page = platform_console.get("/console")
    for src in re.findall(r'(?:src|href)="(/console/static/[^"]+)"', page.text):
        asset = platform_console.get(src.replace("&amp;", "&"))
        assert asset.status_code == 200 and asset.headers["x-content-type-options"] == "nosniff"
        assert "immutable" in asset.headers["cache-control"]
        assert asset.headers["content-security-policy"].startswith("default-src 'self'")
    missing = platform_console.get("/console/no-such-page")
    assert missing.status_code == 404 and error_of(missing.text) == ("not_found", "No console page at this address.")
    assert missing.headers["content-security-policy"].startswith("default-src 'self'")
    assert platform_console.get("/console/").status_code == 404  # a trailing slash is another, unknown path
    sign_in = httpx.get(demo.url + "/console/sign-in")
    assert sign_in.headers["content-security-policy"].startswith("default-src 'self'")
    licence = httpx.get(demo.url + "/console/static/vendor/chart.js.LICENSE.md")
    assert licence.status_code == 200 and "MIT" in licence.text


def test_bad_keys_are_refused_with_their_section_3_messages(demo: Demo, admin: httpx.Client) -> None:
    with ConsoleClient(demo.url) as client:
        refused = client.sign_in("sk-plat_" + "x" * 43)
        assert refused.status_code == 401 and error_of(refused.text) == (
            "invalid_api_key",
            "Invalid or missing API key.",
        )
        assert "tollway_session" not in refused.headers.get("set-cookie", "")
        inference_only = admin.post(
            f"/v1/admin/platforms/{demo.seeded['platform_id']}/api-keys", json={"scopes": ["inference"]}
        ).json()["raw_key"]
        refused = client.sign_in(inference_only)
        assert refused.status_code == 403 and error_of(refused.text) is not None
        assert error_of(refused.text)[0] == "forbidden"  # type: ignore[index]


def test_the_sign_in_form_needs_its_own_csrf_token(demo: Demo) -> None:
    with httpx.Client(base_url=demo.url) as client:
        no_cookie = client.post("/console/sign-in", data={"csrf": "x", "key": demo.seeded["platform_key"]})
        assert no_cookie.status_code == 403 and error_of(no_cookie.text)[0] == "forbidden"  # type: ignore[index]
        page = client.get("/console/sign-in")
        wrong = client.post("/console/sign-in", data={"csrf": "not-it", "key": demo.seeded["platform_key"]})
        assert wrong.status_code == 403
        cross_site = client.post(
            "/console/sign-in",
            data={"csrf": csrf_of(page.text), "key": demo.seeded["platform_key"]},
            headers={"Origin": "https://evil.example"},
        )
        assert cross_site.status_code == 403 and "tollway_session" not in client.cookies


def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(
    demo: Demo, platform_console: ConsoleClient
) -> None:
    path = "/console/end-users"
    missing = platform_console.http.post(path, data={"external_id": "csrf-victim"})
    wrong = platform_console.http.post(path, data={"external_id": "csrf-victim", "csrf": "guess"})
    page = platform_console.get(path)
    cross_site = platform_console.http.post(
        path, data={"external_id": "csrf-victim", "csrf": csrf_of(page.text)}, headers={"Origin": "http://evil.test"}
    )
    for refused in (missing, wrong, cross_site):
        assert refused.status_code == 403, refused.text[:300]
        assert error_of(refused.text)[0] == "forbidden"  # type: ignore[index]
    with demo.api(demo.seeded["platform_key"]) as api:
        listed = api.get(f"/v1/platforms/{demo.seeded['platform_id']}/end-users", params={"external_id": "csrf-victim"})
        assert listed.json()["total"] == 0
    done = platform_console.created(path, path, {"external_id": "csrf-ok"})  # the same form with its token works
    assert done.status_code == 200 and secret_of(done.text).startswith("sk-eu_")


def _shown_once(client: ConsoleClient, page: str, action: str, data: dict[str, Any], prefix: str) -> str:
    """Post/redirect/get: the form answers 303 to a page named by a random id (never the secret); that page shows
    the secret once; reloading it shows it no more, re-sends nothing, and says so."""
    sent = client.submit(page, action, data)
    assert sent.status_code == 303, sent.text[:500]
    location = sent.headers["location"]
    assert re.fullmatch(r"/console[a-z0-9/-]*\?shown=[A-Za-z0-9_-]{22}", location), location
    shown = client.get(location)
    assert shown.status_code == 200, shown.text[:500]
    secret = secret_of(shown.text)
    assert secret.startswith(prefix) and secret not in location and secret not in sent.text
    reloaded = client.get(location)
    assert reloaded.status_code == 200 and secret not in reloaded.text and 'id="secret-value"' not in reloaded.text
    assert "shown once and is not shown again" in reloaded.text
    return secret


def test_forms_that_create_a_secret_redirect_and_show_it_once(demo: Demo, platform_console: ConsoleClient) -> None:
    pid = demo.seeded["platform_id"]
    with demo.api(demo.seeded["platform_key"]) as api:
        keys_before = api.get(f"/v1/platforms/{pid}/api-keys", params={"limit": 100}).json()["total"]
        key = _shown_once(
            platform_console, "/console/keys", "/console/keys", {"name": "prg", "scopes": "inference"}, "sk-plat_"
        )
        # the reload created no second key, and the key works
        assert api.get(f"/v1/platforms/{pid}/api-keys", params={"limit": 100}).json()["total"] == keys_before + 1
        with demo.api(key) as created:
            assert created.get("/v1/models").status_code == 200
        user_key = _shown_once(
            platform_console, "/console/end-users", "/console/end-users", {"external_id": "prg-user"}, "sk-eu_"
        )
        user = api.get(f"/v1/platforms/{pid}/end-users", params={"external_id": "prg-user"}).json()["data"][0]
        with demo.api(user_key) as end_user:
            assert end_user.get("/v1/me/rate-limits").status_code == 200
        page = f"/console/end-users/{user['id']}"
        _shown_once(platform_console, page, f"{page}/keys", {"name": "second"}, "sk-eu_")
        hooks = "/console/webhooks"
        _shown_once(
            platform_console, hooks, hooks, {"url": "http://127.0.0.1:9/prg", "events": "wallet.low_balance"}, "whsec_"
        )
        hook = next(h for h in api.get(f"/v1/platforms/{pid}/webhooks").json()["data"] if h["url"].endswith("/prg"))
        _shown_once(platform_console, f"{hooks}/{hook['id']}", f"{hooks}/{hook['id']}/rotate-secret", {}, "whsec_")
    # another browser signed in with the same key cannot open the page of this one's secret
    sent = platform_console.submit("/console/keys", "/console/keys", {"name": "prg-2", "scopes": "inference"})
    with ConsoleClient(demo.url) as other:
        assert other.sign_in(demo.seeded["platform_key"]).status_code == 303
        assert 'id="secret-value"' not in other.get(sent.headers["location"]).text
    assert secret_of(platform_console.get(sent.headers["location"]).text).startswith("sk-plat_")


def test_keys_created_in_two_tabs_are_each_shown_once(demo: Demo, platform_console: ConsoleClient) -> None:
    """Two forms sent before either page is opened: each page shows its own key (one no longer replaces the other)."""
    sent = [
        platform_console.submit("/console/keys", "/console/keys", {"name": f"tab-{n}", "scopes": "inference"})
        for n in (1, 2)
    ]
    assert [s.status_code for s in sent] == [303, 303]
    pages = [s.headers["location"] for s in sent]
    secrets = [secret_of(platform_console.get(page).text) for page in reversed(pages)]
    assert len(set(secrets)) == 2 and all(secret.startswith("sk-plat_") for secret in secrets)
    assert all('id="secret-value"' not in platform_console.get(page).text for page in pages)


def test_operator_forms_that_create_a_key_redirect_and_show_it_once(demo: Demo) -> None:
    with ConsoleClient(demo.url) as op:
        assert op.sign_in(demo.admin_key).status_code == 303
        _shown_once(op, "/console", "/console/platforms", {"name": "PRG Co"}, "sk-plat_")
        with demo.api(demo.admin_key) as api:
            made = [
                p for p in api.get("/v1/admin/platforms", params={"limit": 100}).json()["data"] if p["name"] == "PRG Co"
            ]
        assert len(made) == 1  # the reload made no second platform
        page = f"/console/platforms/{made[0]['id']}"
        _shown_once(op, page, f"{page}/api-keys", {"name": "recovery"}, "sk-plat_")


def _connect_in_console(console: ConsoleClient, slug: str, oauth: OAuthServer) -> httpx.Response:
    """Starts the connection from the console, lets the authorization server answer, and follows the browser back
    the way a browser would: the callback's redirect, then the console's own step to the connections page."""
    started = console.submit("/console/mcp", f"/console/mcp/{slug}/connect")
    assert started.status_code == 200, started.text[:500]
    found = re.search(r'href="([^"]+)" id="authorize-link"', started.text)
    assert found is not None, started.text[:2000]
    authorize_url = html.unescape(found.group(1))
    assert dict(parse_qsl(urlsplit(authorize_url).query))["redirect_uri"].endswith("/v1/mcp/oauth/callback")
    at_server = httpx.get(authorize_url, timeout=30)  # the user approves (or not) at the app
    assert at_server.status_code == 302, at_server.text
    callback = httpx.get(at_server.headers["location"], timeout=30)  # no console cookie crosses from another site
    assert callback.status_code == 303, callback.text
    back = callback.headers["location"]
    assert back.startswith(console.http.base_url.join("/console/mcp/returned?").__str__()), back
    returned = httpx.get(back, timeout=30)  # without the session cookie (SameSite=Strict): no sign-in detour
    assert returned.status_code == 200, returned.text[:500]
    target = re.search(r'<meta http-equiv="refresh" content="0; url=([^"]+)">', returned.text)
    assert target is not None, returned.text
    path = html.unescape(target.group(1))
    assert path.startswith("/console/mcp?")  # our own page, whatever the query said
    return console.get(path)  # the same-site step: the session cookie goes along


def test_connecting_an_mcp_app_in_the_console_comes_back_to_the_console(demo: Demo) -> None:
    oauth = OAuthServer().start()
    slug = "console-notes"
    try:
        with demo.api(demo.seeded["platform_key"]) as api:
            app = {
                "slug": slug,
                "name": "Console Notes",
                "server_url": UNUSED_MCP_URL,
                "auth": oauth.app_auth(["notes.read"]),
            }
            created = api.post(f"/v1/platforms/{demo.seeded['platform_id']}/mcp/apps", json=app)
            assert created.status_code == 201, created.text
        with ConsoleClient(demo.url) as console:
            assert console.sign_in(demo.seeded["end_user_key"]).status_code == 303
            oauth.deny = True
            refused = _connect_in_console(console, slug, oauth)
            assert "Console Notes was not connected: the authorization was declined at the app." in refused.text
            assert "<code>access_denied</code>" in refused.text
            oauth.deny = False
            connected = _connect_in_console(console, slug, oauth)
            assert 'id="mcp-outcome">Console Notes is connected.' in connected.text
            row = re.search(rf'<tr data-slug="{slug}">.*?</tr>', connected.text, re.S)
            assert row is not None and "since " in row.group(0) and "Disconnect" in row.group(0)
            # the platform's mcp_redirect_origins are untouched: the console's return is Tollway's own page
            with demo.api(demo.seeded["end_user_key"]) as me:
                config = me.get("/v1/me/mcp-config").json()["apps"]
            assert next(a for a in config if a["slug"] == slug)["connected"] is True
            # the returning page keeps only a valid slug, status and code, and always leads to our own page
            forged = httpx.get(
                f"{demo.url}/console/mcp/returned",
                params={"mcp_app": "https://evil.example/", "status": "connected"},
                timeout=30,
            )
            assert 'content="0; url=/console/mcp"' in forged.text
            odd = httpx.get(
                f"{demo.url}/console/mcp/returned",
                params={"mcp_app": slug, "status": "error", "error": "<script>"},
                timeout=30,
            )
            assert "<script>" not in odd.text and "error=oauth_error" in odd.text
    finally:
        oauth.stop()


def test_a_session_of_one_platform_never_shows_another_platforms_objects(
    demo: Demo, platform_console: ConsoleClient
) -> None:
    other = demo.api(demo.other_key)
    foreign_user = other.post(f"/v1/platforms/{demo.other_platform_id}/end-users", json={"external_id": "theirs"})
    foreign_user_id = foreign_user.json()["id"]
    foreign_key_id = foreign_user.json()["api_key"]["id"]
    foreign_hook = other.post(
        f"/v1/platforms/{demo.other_platform_id}/webhooks", json={"url": "http://127.0.0.1:9/hook"}
    ).json()["id"]
    for path in (f"/console/end-users/{foreign_user_id}", f"/console/webhooks/{foreign_hook}"):
        page = platform_console.get(path)
        assert page.status_code == 404 and error_of(page.text)[0] == "not_found"  # type: ignore[index]
    revoke = platform_console.submit("/console/keys", f"/console/keys/{foreign_key_id}/revoke")
    assert revoke.status_code == 404
    assert (
        other.get(
            "/v1/me/budget", headers={"Authorization": f"Bearer {foreign_user.json()['api_key']['raw_key']}"}
        ).status_code
        == 404
    )  # still a live key (no budget)
    logs = platform_console.get("/console/logs", params={"end_user_id": foreign_user_id})
    assert logs.status_code == 200 and "No rows match." in logs.text
    for path in ("/console/end-users", "/console/webhooks", "/console/keys"):
        page = platform_console.get(path).text
        assert foreign_user_id not in page and foreign_hook not in page and "theirs" not in page
    operator_page = platform_console.get(f"/console/platforms/{demo.other_platform_id}")
    assert operator_page.status_code == 403 and error_of(operator_page.text)[0] == "wrong_key_type"  # type: ignore[index]
    other.close()


def test_sign_out_ends_the_session_on_the_server(demo: Demo) -> None:
    with ConsoleClient(demo.url) as client:
        client.sign_in(demo.seeded["end_user_key"])
        cookie = client.session_cookie
        assert cookie is not None
        out = client.submit("/console", "/console/sign-out")
        assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
        assert "max-age=0" in _cookie_header(out, "tollway_session").lower()
    with httpx.Client(base_url=demo.url, cookies={"tollway_session": cookie}) as replay:
        again = replay.get("/console")
        assert again.status_code == 303 and again.headers["location"] == "/console/sign-in"


def test_a_revoked_key_ends_its_session_at_the_next_request(demo: Demo, admin: httpx.Client) -> None:
    pid = demo.seeded["platform_id"]
    key = admin.post(f"/v1/admin/platforms/{pid}/api-keys", json={"name": "short-lived"}).json()
    with ConsoleClient(demo.url) as client:
        assert client.sign_in(key["raw_key"]).status_code == 303
        assert client.get("/console/wallet").status_code == 200
        with demo.api(demo.seeded["platform_key"]) as api:
            assert api.delete(f"/v1/platforms/{pid}/api-keys/{key['id']}").status_code == 204
        ended = client.get("/console/wallet")  # another instance's cache lives ≤ 0.9 s; this one was invalidated
        assert ended.status_code == 303 and ended.headers["location"] == "/console/sign-in"
        assert client.get("/console/wallet").status_code == 303


def test_a_deleted_platform_ends_its_sessions(demo: Demo, admin: httpx.Client) -> None:
    created = admin.post("/v1/admin/platforms", json={"name": "Short Lived"}).json()
    pid, key = created["platform"]["id"], created["api_key"]["raw_key"]
    with ConsoleClient(demo.url) as client:
        client.sign_in(key)
        assert client.get("/console").status_code == 200
        with demo.api(key) as api:
            assert api.delete(f"/v1/platforms/{pid}").status_code == 204
        assert client.get("/console").status_code == 303


def test_console_errors_are_the_api_errors(demo: Demo, platform_console: ConsoleClient) -> None:
    """The same body through the console form and through the API gets the same §3 code and message."""
    user_id = demo.seeded["end_user_id"]
    page = f"/console/end-users/{user_id}"
    through_console = platform_console.submit(page, f"{page}/budget", {"max_usd": "-1", "period": "monthly"})
    with demo.api(demo.seeded["platform_key"]) as api:
        through_api = api.patch(
            f"/v1/platforms/{demo.seeded['platform_id']}/end-users/{user_id}/budget",
            json={"max_usd": "-1", "period": "monthly", "auto_replenish": False},
        ).json()["error"]
    assert through_console.status_code == 400
    assert error_of(through_console.text) == (through_api["code"], through_api["message"])
    assert f"({through_api['param']})" in through_console.text


def test_budget_suspension_and_topup_go_through_the_budget_service(demo: Demo, platform_console: ConsoleClient) -> None:
    user = platform_console.created("/console/end-users", "/console/end-users", {"external_id": "budgeted"})
    user_id = re.search(r'href="/console/end-users/([0-9a-f-]{36})" id="created-link"', user.text).group(1)  # type: ignore[union-attr]
    page = f"/console/end-users/{user_id}"
    assert platform_console.submit(page, f"{page}/budget", {"max_usd": "2.5", "period": "daily"}).status_code == 303
    form = platform_console.get(page).text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', form[form.index("/budget/topup") :]).group(1)  # type: ignore[union-attr]
    csrf = csrf_of(form)
    for _ in range(2):  # the same form sent twice credits once (its Idempotency-Key)
        done = platform_console.http.post(
            f"{page}/budget/topup", data={"csrf": csrf, "amount_usd": "1.25", "idempotency_key": key}
        )
        assert done.status_code == 303
    suspended = platform_console.submit(page, f"{page}/budget/suspension", {"is_suspended": "true"})
    assert suspended.status_code == 303
    with demo.api(demo.seeded["platform_key"]) as api:
        budget = api.get(f"/v1/platforms/{demo.seeded['platform_id']}/end-users/{user_id}/budget").json()
    assert budget["max_usd"] == 3.75 and budget["period"] == "daily" and budget["is_suspended"] is True
    assert "Suspended" in platform_console.get(page).text


def test_the_log_export_equals_the_api_rows(demo: Demo, platform_console: ConsoleClient) -> None:
    pid = demo.seeded["platform_id"]
    user = demo.seeded["history_users"].split(",")[0]
    query = {"end_user_id": user, "status": "success", "model": "echo"}
    exported = platform_console.get("/console/logs.csv", params=query)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["content-disposition"].startswith('attachment; filename="tollway-usage-')
    lines = exported.text.splitlines()
    rows: list[dict[str, Any]] = []
    with demo.api(demo.seeded["platform_key"]) as api:
        page = 1
        while True:
            body = api.get(f"/v1/platforms/{pid}/logs", params={**query, "limit": 100, "page": page}).json()
            rows += body["data"]
            if page * 100 >= body["total"]:
                break
            page += 1
    assert len(rows) > 5 and len(lines) == len(rows) + 1
    assert lines[0].split(",") == list(rows[0].keys())
    ids = [line.split(",")[0] for line in lines[1:]]
    assert ids == [row["id"] for row in rows]
    first = dict(zip(lines[0].split(","), lines[1].split(","), strict=True))
    assert first["cost_usd"] == str(rows[0]["cost_usd"]) and first["request_id"] == rows[0]["request_id"]


def test_the_demo_history_keeps_the_money_invariants(demo: Demo, admin: httpx.Client) -> None:
    report = admin.get("/v1/admin/reconcile").json()
    assert report["ok"] is True, report["differences"]
    with ConsoleClient(demo.url) as client:
        client.sign_in(demo.admin_key)
        assert 'id="reconcile-status">ok<' in client.get("/console/reconcile").text


def test_the_console_can_be_turned_off(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'off.db'}", console=False)
    with running_gateway(settings) as server:
        for path in ("/console", "/console/sign-in", "/console/static/console.css"):
            response = httpx.get(server.url + path)
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_the_session_cookie_is_secure_behind_an_https_public_url(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'tls.db'}", public_url="https://gateway.example")
    assert settings.admin_key is not None
    with running_gateway(settings) as server, ConsoleClient(server.url) as client:
        page = client.get("/console/sign-in")
        sign_in_cookie = _cookie_header(page, "tollway_sign_in")
        assert "secure" in sign_in_cookie.lower()
        # httpx keeps Secure cookies off plain http; send it by hand, as the TLS proxy's hop to Tollway would
        signed_in = client.http.post(
            "/console/sign-in",
            data={"csrf": csrf_of(page.text), "key": settings.admin_key},
            headers={"Origin": "https://gateway.example", "Cookie": sign_in_cookie.split(";", 1)[0]},
        )
        assert signed_in.status_code == 303
        assert "secure" in _cookie_header(signed_in, "tollway_session").lower()


def test_mcp_apps_and_an_end_users_connections(demo: Demo, platform_console: ConsoleClient) -> None:
    header_secret = "hdr-" + "s" * 30
    client_secret = "cs-" + "c" * 30
    apps = "/console/mcp-apps"
    made = platform_console.submit(
        apps,
        apps,
        {
            "slug": "search", "name": "Search", "server_url": "http://127.0.0.1:9/mcp", "auth_type": "header",
            "header_name": "X-Api-Key", "header_value": header_secret, "price_per_call_usd": "0.002",
            "allowed_tools": "find, fetch",
        },
    )  # fmt: skip
    assert made.status_code == 303, made.text[:500]
    made = platform_console.submit(
        apps,
        apps,
        {
            "slug": "drive", "name": "Drive", "server_url": "http://127.0.0.1:9/drive", "auth_type": "oauth2",
            "authorize_url": "http://127.0.0.1:9/authorize", "token_url": "http://127.0.0.1:9/token",
            "client_id": "tollway", "client_secret": client_secret, "scopes": "files.read files.write",
        },
    )  # fmt: skip
    assert made.status_code == 303, made.text[:500]
    listed = platform_console.get(apps).text
    assert header_secret not in listed and client_secret not in listed and "(secret set)" in listed
    with demo.api(demo.seeded["platform_key"]) as api:
        body = api.get(f"/v1/platforms/{demo.seeded['platform_id']}/mcp/apps").json()["data"]
    by_slug = {app["slug"]: app for app in body}
    assert by_slug["search"]["auth"] == {"type": "header", "name": "X-Api-Key"}
    assert by_slug["search"]["allowed_tools"] == ["find", "fetch"] and by_slug["search"]["price_per_call_usd"] == 0.002
    assert by_slug["drive"]["auth"]["scopes"] == ["files.read", "files.write"]

    duplicate = platform_console.submit(
        apps, apps, {"slug": "search", "name": "Again", "server_url": "http://127.0.0.1:9/x"}
    )
    assert duplicate.status_code == 400
    assert error_of(duplicate.text) == (
        "invalid_request",
        "An MCP app with slug 'search' already exists on this platform.",
    )

    with ConsoleClient(demo.url) as end_user:
        end_user.sign_in(demo.seeded["end_user_key"])
        page = end_user.get("/console/mcp").text
        assert "/v1/mcp/search" in page and "/v1/mcp/drive" in page
        started = end_user.submit("/console/mcp", "/console/mcp/drive/connect")
        assert started.status_code == 200
        link = re.search(r'href="([^"]+)" id="authorize-link"', started.text)
        assert link is not None
        url = link.group(1).replace("&amp;", "&")
        assert (
            url.startswith("http://127.0.0.1:9/authorize?") and "code_challenge_method=S256" in url and "state=" in url
        )
        refused = end_user.submit("/console/mcp", "/console/mcp/drive/disconnect")
        assert refused.status_code == 404
        assert error_of(refused.text) == ("not_found", "The MCP app 'drive' is not connected.")

    app_id = by_slug["drive"]["id"]
    assert platform_console.submit(apps, f"{apps}/{app_id}", {"is_active": "false"}).status_code == 303
    assert platform_console.submit(apps, f"{apps}/{app_id}/delete").status_code == 303
    assert "Drive" not in platform_console.get(apps).text


def test_add_funds_is_hidden_and_404_without_stripe(platform_console: ConsoleClient) -> None:
    assert "/console/add-funds" not in platform_console.get("/console").text
    page = platform_console.get("/console/add-funds")
    assert page.status_code == 404 and error_of(page.text)[0] == "not_found"  # type: ignore[index]
    assert "TOLLWAY_STRIPE_SECRET_KEY" in page.text


def test_add_funds_opens_a_checkout_and_the_webhook_credits_the_wallet(tmp_path: Path) -> None:
    secret_key, webhook_secret = stripe_secrets()
    fake = FakeStripe(secret_key).start()
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'funds.db'}",
        stripe_secret_key=secret_key,
        stripe_webhook_secret=webhook_secret,
        stripe_api_base=fake.url,
    )
    try:
        with (
            running_gateway(settings) as server,
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {settings.admin_key}"}) as admin,
            ConsoleClient(server.url) as console,
        ):
            created = admin.post("/v1/admin/platforms", json={"name": "Card Co"}).json()
            pid = created["platform"]["id"]
            console.sign_in(created["api_key"]["raw_key"])
            assert 'href="/console/add-funds"' in console.get("/console").text
            too_small = console.submit("/console/add-funds", "/console/add-funds", {"amount_usd": "2"})
            assert too_small.status_code == 400
            assert error_of(too_small.text) == ("invalid_request", "amount_usd must be between 5 and 10000 USD.")
            ready = console.submit("/console/add-funds", "/console/add-funds", {"amount_usd": "20"})
            assert ready.status_code == 200
            link = re.search(r'href="([^"]+)" id="checkout-link"', ready.text)
            assert link is not None
            (call,) = fake.received()
            assert pid in call.form.values()  # the platform travels in the session's metadata
            session_id = next(iter(fake.sessions))
            assert link.group(1).replace("&amp;", "&") == fake.sessions[session_id]["url"]
            assert console.get(f"/v1/platforms/{pid}/wallet").status_code == 401  # the console cookie is no API key
            payload, headers = signed(fake.completed_event(session_id), webhook_secret)
            assert httpx.post(server.url + "/v1/stripe/webhook", content=payload, headers=headers).status_code == 200
            wallet = console.get("/console/wallet", params={"checkout": "paid"})
            assert 'id="checkout-notice"' in wallet.text and 'id="balance">$20.00<' in wallet.text
    finally:
        fake.stop()


def _checkout_link(page: httpx.Response) -> str:
    assert page.status_code == 200, page.text[:500]
    link = re.search(r'href="([^"]+)" id="checkout-link"', page.text)
    assert link is not None, page.text[:500]
    return html.unescape(link.group(1))


def test_add_funds_sent_twice_opens_one_checkout_and_credits_once(tmp_path: Path) -> None:
    """The Add funds form carries a one-time key bound to the session: sent twice (one after the other, or both at
    once as a double click does), it opens one Checkout Session and shows the same link, and the wallet is credited
    once; the same key from another session is another operation; a form without its key is refused (400)."""
    secret_key, webhook_secret = stripe_secrets()
    fake = FakeStripe(secret_key).start()
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'twice.db'}",
        stripe_secret_key=secret_key,
        stripe_webhook_secret=webhook_secret,
        stripe_api_base=fake.url,
    )
    try:
        with (
            running_gateway(settings) as server,
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {settings.admin_key}"}) as admin,
            ConsoleClient(server.url) as console,
            ConsoleClient(server.url) as other,
        ):
            created = admin.post("/v1/admin/platforms", json={"name": "Twice Co"}).json()
            pid, key = created["platform"]["id"], created["api_key"]["raw_key"]
            console.sign_in(key)
            fields = form_fields(console.get("/console/add-funds").text, "/console/add-funds")
            sent = {**fields, "amount_usd": "20"}
            links = [_checkout_link(console.http.post("/console/add-funds", data=sent)) for _ in range(2)]
            assert len(fake.received()) == 1 and links[0] == links[1]

            async def double_click() -> list[httpx.Response]:
                async with httpx.AsyncClient(base_url=server.url, cookies=console.http.cookies, timeout=30) as http:
                    again = form_fields(console.get("/console/add-funds").text, "/console/add-funds")
                    data = {**again, "amount_usd": "30"}
                    return list(await asyncio.gather(*(http.post("/console/add-funds", data=data) for _ in range(2))))

            clicked = [_checkout_link(page) for page in asyncio.run(double_click())]
            assert len(fake.received()) == 2 and clicked[0] == clicked[1] != links[0]

            other.sign_in(key)  # the first form's key from another session: a new operation, a new session
            theirs = {**sent, "csrf": csrf_of(other.get("/console/add-funds").text)}
            assert _checkout_link(other.http.post("/console/add-funds", data=theirs)) not in (links[0], clicked[0])
            assert len(fake.received()) == 3
            keyless = {k: v for k, v in sent.items() if k != "idempotency_key"}
            refused = console.http.post("/console/add-funds", data=keyless)
            assert refused.status_code == 400 and len(fake.received()) == 3
            assert error_of(refused.text) is not None and "one-time key" in error_of(refused.text)[1]  # type: ignore[index]

            session_id = next(s for s, body in fake.sessions.items() if body["url"] == links[0])
            payload, headers = signed(fake.completed_event(session_id), webhook_secret)
            for _ in range(2):  # Stripe redelivers: still one credit
                assert (
                    httpx.post(server.url + "/v1/stripe/webhook", content=payload, headers=headers).status_code == 200
                )
            wallet = admin.get(f"/v1/admin/platforms/{pid}").json()["wallet"]
            assert wallet["balance_usd"] == 20
    finally:
        fake.stop()


def test_the_operator_manages_the_catalog_and_wallets(demo: Demo) -> None:
    with ConsoleClient(demo.url) as op, demo.api(demo.admin_key) as api:
        op.sign_in(demo.admin_key)
        bad = op.submit("/console/providers", "/console/providers", {"slug": "Bad Slug", "name": "x", "kind": "openai"})
        through_api = api.post("/v1/admin/providers", json={"slug": "Bad Slug", "name": "x", "kind": "openai"})
        assert bad.status_code == 400 and error_of(bad.text) == (
            through_api.json()["error"]["code"],
            through_api.json()["error"]["message"],
        )
        provider_form = {
            "slug": "local-llm", "name": "Local", "kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1",
        }  # fmt: skip
        made = op.submit("/console/providers", "/console/providers", provider_form)
        assert made.status_code == 303
        provider = next(p for p in api.get("/v1/admin/providers").json()["data"] if p["slug"] == "local-llm")
        row = {
            "slug": "local-model", "provider_id": provider["id"], "upstream_model": "m", "input_price_per_mtok": "1.5",
            "output_price_per_mtok": "2", "max_output_tokens": "512", "priority": "",
        }  # fmt: skip
        assert op.submit("/console/models", "/console/models", row).status_code == 303
        model = next(m for m in api.get("/v1/admin/models").json()["data"] if m["slug"] == "local-model")
        assert model["input_price_per_mtok"] == 1.5 and model["max_output_tokens"] == 512 and model["priority"] == 100
        edit = f"/console/models/{model['id']}"
        changed = {
            **{k: v for k, v in row.items() if k not in ("slug", "provider_id")},
            "output_price_per_mtok": "2.25",
        }
        assert op.submit(edit, edit, {**changed, "priority": "7"}).status_code == 303  # unchecked: deactivated
        model = api.get(f"/v1/admin/models/{model['id']}").json()
        assert model["output_price_per_mtok"] == 2.25 and model["priority"] == 7 and model["is_active"] is False
        assert (
            op.submit("/console/providers", f"/console/providers/{provider['id']}", {"is_active": "false"}).status_code
            == 303
        )
        assert api.get(f"/v1/admin/providers/{provider['id']}").json()["is_active"] is False

        created = op.created("/console", "/console/platforms", {"name": "Console Made"})
        new_key = secret_of(created.text)
        with demo.api(new_key) as platform_api:
            me = platform_api.get("/v1/models")
        assert new_key.startswith("sk-plat_") and me.status_code == 200
        pid = next(
            p["id"]
            for p in api.get("/v1/admin/platforms", params={"limit": 100}).json()["data"]
            if p["name"] == "Console Made"
        )
        page = f"/console/platforms/{pid}"
        form = op.get(page).text
        key = re.search(r'name="idempotency_key" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        for _ in range(2):  # sent twice, credited once
            sent = op.http.post(
                f"{page}/topup", data={"csrf": csrf_of(form), "amount_usd": "12.5", "idempotency_key": key}
            )
            assert sent.status_code == 303 and sent.headers["location"] == f"{page}?ok=topped-up"
        wallet = api.get(f"/v1/admin/platforms/{pid}").json()["wallet"]
        assert wallet["balance_usd"] == 12.5
        assert 'id="balance">$12.50<' in op.get(page).text
        recovery = op.created(page, f"{page}/api-keys", {"name": "recovery"})
        assert secret_of(recovery.text).startswith("sk-plat_")


def test_a_platform_manages_its_keys_configs_hooks_and_end_users(demo: Demo, platform_console: ConsoleClient) -> None:
    pid = demo.seeded["platform_id"]
    with demo.api(demo.seeded["platform_key"]) as api:
        made = platform_console.created("/console/keys", "/console/keys", {"name": "ci", "scopes": "inference"})
        raw = secret_of(made.text)
        key = next(k for k in api.get(f"/v1/platforms/{pid}/api-keys").json()["data"] if k["name"] == "ci")
        assert key["scopes"] == ["inference"] and key["key_prefix"] == raw[:12]
        assert platform_console.submit("/console/keys", f"/console/keys/{key['id']}/revoke").status_code == 303
        with demo.api(raw) as revoked:
            assert revoked.get("/v1/models").status_code == 401

        configs = "/console/llm-configs"
        config = api.get(f"/v1/platforms/{pid}/llm-configs").json()["data"][0]
        rotated = platform_console.submit(configs, f"{configs}/{config['id']}", {"api_key": "sk-rotated-provider-key"})
        assert rotated.status_code == 303 and "sk-rotated-provider-key" not in platform_console.get(configs).text
        assert platform_console.submit(configs, f"{configs}/{config['id']}", {"is_default": "true"}).status_code == 303
        assert api.get(f"/v1/platforms/{pid}/llm-configs/{config['id']}").json()["is_default"] is True
        blank = platform_console.submit(configs, configs, {"provider_id": config["provider_id"], "api_key": ""})
        assert (
            blank.status_code == 400
            and error_of(blank.text)[1] == "api_key must be a string of 1 to 4096 printable characters."
        )  # type: ignore[index]

        hooks = "/console/webhooks"
        made = platform_console.created(hooks, hooks, {"url": "http://127.0.0.1:9/h", "events": "wallet.low_balance"})
        first_secret = secret_of(made.text)
        hook = next(
            h for h in api.get(f"/v1/platforms/{pid}/webhooks").json()["data"] if h["url"] == "http://127.0.0.1:9/h"
        )
        assert hook["events"] == ["wallet.low_balance"] and first_secret.startswith("whsec_")
        page = f"{hooks}/{hook['id']}"
        rotated = platform_console.created(page, f"{page}/rotate-secret")
        assert secret_of(rotated.text).startswith("whsec_") and secret_of(rotated.text) != first_secret
        assert platform_console.submit(page, page, {"is_active": "false"}).status_code == 303
        assert api.get(f"/v1/platforms/{pid}/webhooks/{hook['id']}").json()["is_active"] is False
        assert platform_console.submit(page, f"{page}/delete").status_code == 303
        assert api.get(f"/v1/platforms/{pid}/webhooks/{hook['id']}").status_code == 404

        user = api.post(f"/v1/platforms/{pid}/end-users", json={"external_id": "limits"}).json()
        page = f"/console/end-users/{user['id']}"
        put = platform_console.submit(
            page, f"{page}/rate-limits", {"rpm_limit": "30", "tpm_limit": "", "rpd_limit": "900"}
        )
        assert put.status_code == 303
        limits = api.get(f"/v1/platforms/{pid}/end-users/{user['id']}/rate-limits").json()
        assert (limits["rpm_limit"], limits["tpm_limit"], limits["rpd_limit"]) == (30, None, 900)
        zero = platform_console.submit(page, f"{page}/rate-limits", {"rpm_limit": "0"})
        assert zero.status_code == 400 and error_of(zero.text)[0] == "invalid_request"  # type: ignore[index]
        assert platform_console.submit(page, f"{page}/rate-limits/delete").status_code == 303
        assert api.get(f"/v1/platforms/{pid}/end-users/{user['id']}/rate-limits").status_code == 404
        assert platform_console.submit(page, f"{page}/active", {"is_active": "false"}).status_code == 303
        with demo.api(user["api_key"]["raw_key"]) as deactivated:
            assert deactivated.post("/v1/chat/completions", json={"model": "echo", "messages": []}).status_code == 403
        assert platform_console.submit(page, f"{page}/delete").status_code == 303
        assert api.get(f"/v1/platforms/{pid}/end-users/{user['id']}").status_code == 404
