"""The console in a real browser (SPEC §17.1): each kind of key signs in; a platform creates an end user, sets its
budget, creates a key (shown once) and revokes it (the API then refuses it), adds an LLM config, sees its overview
charts drawn from the seeded month, filters and exports its logs (the CSV is the API's rows), replays a webhook
delivery; pages fit a 375 px screen; signing out ends the session."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import DemoApp, sign_in
from tests.support.oauth_server import OAuthServer

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(
    ("kind", "label", "links"),
    [
        ("operator", "operator", ["Platforms", "Providers", "Models", "Reconciliation"]),
        ("platform", "platform", ["Overview", "Wallet", "End users", "API keys", "LLM configs", "Usage logs"]),
        ("end_user", "end user", ["Budget", "Usage", "Keys"]),
    ],
)
def test_each_kind_of_key_signs_in(page: Page, app: DemoApp, kind: str, label: str, links: list[str]) -> None:
    key = {"operator": app.admin_key, "platform": app.platform_key, "end_user": app.end_user_key}[kind]
    sign_in(page, app, key)
    expect(page.locator(".top .who")).to_have_text(label)
    nav = page.locator("nav.nav a")
    for link in links:
        expect(nav.filter(has_text=link)).to_have_count(1)
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["tollway_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/console"
    assert key not in session["value"]
    storage = page.evaluate("JSON.stringify(Object.assign({}, localStorage, sessionStorage)) + document.cookie")
    assert key not in storage and "tollway_session" not in storage  # nothing secret where scripts can read it


def test_end_user_budget_and_a_key_that_is_revoked(page: Page, app: DemoApp) -> None:
    sign_in(page, app, app.platform_key)
    page.click("nav.nav >> text=End users")
    page.fill("#u-ext", "browser-user")
    page.fill("#u-name", "Browser User")
    page.click("form[method=post][action='/console/end-users'] button[type=submit]")
    first_key = page.locator("#secret-value").inner_text()
    assert first_key.startswith("sk-eu_")
    # post/redirect/get: the page showing the key was fetched with GET, so a reload asks nothing, re-sends
    # nothing and shows the key no more
    shown_at = page.url
    assert "?shown=" in shown_at and first_key not in shown_at
    page.on("dialog", lambda dialog: pytest.fail(f"the browser asked: {dialog.message}"))
    page.reload()
    expect(page.locator(".notice")).to_contain_text("shown once and is not shown again")
    assert page.locator("#secret-value").count() == 0 and first_key not in page.content()
    page.go_back()  # the sign-in or list page before the form: nothing is sent again either
    page.goto(shown_at)
    assert page.locator("#secret-value").count() == 0
    page.goto(f"{app.url}/console/end-users?external_id=browser-user")
    assert page.locator("#end-users tbody tr").count() == 1  # one end user: the form was sent once
    page.click("#end-users a >> text=browser-user")
    detail = page.url

    page.fill("#b-max", "3.5")
    page.select_option("#b-period", "monthly")
    page.click("#budget button[type=submit] >> text=Create budget")
    expect(page.locator(".notice")).to_have_text("Saved.")
    expect(page.locator("#budget-max")).to_have_text("$3.50")

    page.fill("#keys input[name=name]", "laptop")
    page.click("#keys button >> text=Create a key")
    new_key = page.locator("#secret-value").inner_text()
    assert new_key.startswith("sk-eu_") and new_key != first_key
    with httpx.Client(base_url=app.url, headers={"Authorization": f"Bearer {new_key}"}) as api:
        assert api.get("/v1/me/budget").json()["max_usd"] == 3.5
        page.goto(detail)  # shown once: the end user's page shows the key's prefix only
        assert new_key not in page.content()
        row = page.locator("#keys tr", has_text="laptop")
        expect(row.locator("code")).to_have_text(new_key[:12] + "…")
        row.locator("button >> text=Revoke").click()
        expect(page.locator(".notice")).to_contain_text("revoked")
        expect(page.locator("#keys tr", has_text="laptop")).to_contain_text("revoked")
        refused = api.get("/v1/me/budget")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


def test_adding_an_llm_config(page: Page, app: DemoApp) -> None:
    sign_in(page, app, app.platform_key)
    page.goto(f"{app.url}/console/llm-configs")
    before = page.locator("#llm-configs tbody tr").count()
    page.fill("#c-key", "sk-browser-provider-key-1234")
    page.check("#c-default")
    page.click("form[action='/console/llm-configs'] button[type=submit]")
    expect(page.locator(".notice")).to_have_text("Saved.")
    expect(page.locator("#llm-configs tbody tr")).to_have_count(before + 1)
    assert "sk-browser-provider-key-1234" not in page.content()  # never shown again
    page.fill("#c-key", "")
    page.click("form[action='/console/llm-configs'] button[type=submit]")  # the browser's own check refuses a blank key
    expect(page.locator("#llm-configs tbody tr")).to_have_count(before + 1)


def _painted_pixels(page: Page, selector: str) -> int:
    return int(
        page.evaluate(
            """(selector) => {
                const canvas = document.querySelector(selector);
                const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                let painted = 0;
                for (let i = 3; i < data.length; i += 4) { if (data[i] !== 0) painted++; }
                return painted;
            }""",
            selector,
        )
    )


def test_the_overview_charts_are_drawn_from_the_seeded_month(page: Page, app: DemoApp) -> None:
    violations: list[str] = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )
    sign_in(page, app, app.platform_key)
    for chart in ("#chart-models", "#chart-end-users", "#chart-traffic"):
        expect(page.locator(f"{chart}[data-drawn='30']")).to_have_count(1)
        assert _painted_pixels(page, chart) > 2000, chart
    days = page.locator("#chart-models").get_attribute("data-days")
    assert days is not None and len(re.findall(r"\d{4}-\d{2}-\d{2}", days)) == 30
    series = page.locator("#chart-models").get_attribute("data-series") or ""
    assert "gpt-4o-mini" in series and "echo" in series
    assert int(page.locator("#requests-30d").inner_text()) > 300
    assert violations == []


def _api_rows(app: DemoApp, query: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with httpx.Client(base_url=app.url, headers={"Authorization": f"Bearer {app.platform_key}"}) as api:
        page_number = 1
        while True:
            body = api.get(f"/v1/platforms/{app.platform_id}/logs", params={**query, "limit": 100, "page": page_number})
            assert body.status_code == 200, body.text
            parsed = json.loads(body.text, parse_float=Decimal)  # USD amounts exactly as sent (§9.1)
            rows += parsed["data"]
            if page_number * 100 >= parsed["total"]:
                return rows
            page_number += 1


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def test_filter_and_export_logs(page: Page, app: DemoApp) -> None:
    sign_in(page, app, app.platform_key)
    page.goto(f"{app.url}/console/logs")
    page.select_option("#log-filters select[name=end_user_id]", app.history_users[0])
    page.select_option("#log-filters select[name=status]", "success")
    page.click("#log-filters button[type=submit]")
    expect(page.locator("#api-query")).to_contain_text("status=success")
    shown = page.locator("#logs tbody tr")
    assert shown.count() == 20
    expect(shown.first).to_contain_text("success")

    api_query = page.locator("#api-query").inner_text().split("?", 1)[1]
    query = dict(parse_qsl(api_query))
    assert query == {"end_user_id": app.history_users[0], "status": "success"}
    with page.expect_download() as download:
        page.click("#export-csv")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    exported = list(csv.DictReader(io.StringIO(text)))
    rows = _api_rows(app, query)
    assert len(rows) > 20 and len(exported) == len(rows)
    for line, row in zip(exported, rows, strict=True):
        assert list(line) == list(row)
        assert dict(line) == {k: _csv_value(v) for k, v in row.items()}


def _wait_for_delivery(page: Page, url: str) -> None:
    deadline = time.monotonic() + 20
    while page.locator("#deliveries tr[data-delivery-id]").count() == 0:
        assert time.monotonic() < deadline, "no delivery appeared"
        time.sleep(0.3)
        page.goto(url)


def test_replaying_a_webhook_delivery(page: Page, app: DemoApp) -> None:
    sign_in(page, app, app.platform_key)
    page.goto(f"{app.url}/console/webhooks")
    page.fill("#w-url", "http://127.0.0.1:9/hook")
    page.check("input[name=events][value='budget.suspended']")
    page.click("form[action='/console/webhooks'] button[type=submit]")
    assert page.locator("#secret-value").inner_text().startswith("whsec_")
    endpoint_url = page.locator("a", has_text="Open the endpoint").get_attribute("href")
    assert endpoint_url is not None

    page.goto(f"{app.url}/console/end-users/{app.end_user_id}")  # an event: suspending a budget
    page.click("#budget button >> text=Suspend")
    expect(page.locator("#budget-state")).to_have_text("Suspended")

    _wait_for_delivery(page, app.url + endpoint_url)
    before = page.locator("#deliveries tr[data-delivery-id]").count()
    page.locator("#deliveries tr[data-delivery-id]").first.locator("button >> text=Replay").click()
    expect(page.locator(".notice")).to_have_text("The delivery is queued again.")
    expect(page.locator("#deliveries tr[data-delivery-id]")).to_have_count(before + 1)
    page.goto(f"{app.url}/console/end-users/{app.end_user_id}")
    page.click("#budget button >> text=Unsuspend")


PAGES = {
    "operator": ["/console", "/console/providers", "/console/models", "/console/reconcile"],
    "platform": [
        "/console", "/console/wallet", "/console/end-users", "/console/keys", "/console/llm-configs",
        "/console/models", "/console/logs", "/console/webhooks", "/console/mcp-apps",
    ],
    "end_user": ["/console", "/console/usage", "/console/keys", "/console/mcp"],
}  # fmt: skip


@pytest.mark.parametrize("kind", ["operator", "platform", "end_user"])
def test_every_page_fits_a_375_px_screen(context: BrowserContext, app: DemoApp, kind: str) -> None:
    page = context.new_page()
    page.set_viewport_size({"width": 375, "height": 812})
    sign_in(page, app, {"operator": app.admin_key, "platform": app.platform_key, "end_user": app.end_user_key}[kind])
    paths = list(PAGES[kind])
    if kind == "platform":
        paths.append(f"/console/end-users/{app.end_user_id}")
    if kind == "operator":
        paths.append(f"/console/platforms/{app.platform_id}")
    for path in paths:
        page.goto(app.url + path)
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1] == 375, (path, widths)


def test_sign_out_ends_the_session(context: BrowserContext, app: DemoApp) -> None:
    page = context.new_page()
    sign_in(page, app, app.end_user_key)
    session = next(c for c in context.cookies() if c["name"] == "tollway_session")
    page.click("#sign-out")
    page.wait_for_url(f"{app.url}/console/sign-in")
    assert all(c["name"] != "tollway_session" for c in context.cookies())
    page.goto(f"{app.url}/console/usage")
    assert page.url == f"{app.url}/console/sign-in"
    context.add_cookies([session])  # the old session id, put back, is dead on the server
    page.goto(f"{app.url}/console/usage")
    assert page.url == f"{app.url}/console/sign-in"


def test_connecting_an_mcp_app_comes_back_to_the_console_across_sites(page: Page, app: DemoApp) -> None:
    """The authorization server is another site (localhost, where the console is 127.0.0.1), as it is in real life:
    the SameSite=Strict session cookie does not ride the callback's redirects, and the console's return page still
    lands the end user, signed in, on their connections with the outcome."""
    oauth = OAuthServer().start()
    oauth.consent_page = True
    elsewhere = oauth.authorize_url.replace("127.0.0.1", "localhost")  # another site than the console's, to a browser
    try:
        with httpx.Client(base_url=app.url, headers={"Authorization": f"Bearer {app.platform_key}"}) as api:
            created = api.post(
                f"/v1/platforms/{app.platform_id}/mcp/apps",
                json={
                    "slug": "browser-notes",
                    "name": "Browser Notes",
                    "server_url": "http://127.0.0.1:9/mcp",
                    "auth": oauth.app_auth(["notes.read"], authorize_url=elsewhere),
                },
            )
            assert created.status_code == 201, created.text
        sign_in(page, app, app.end_user_key)
        page.goto(f"{app.url}/console/mcp")
        page.locator("tr[data-slug='browser-notes'] button >> text=Connect").click()
        page.click("#authorize-link")  # to the app's authorization server on localhost
        page.click("#approve")  # its page sends the browser to the callback: a navigation started by another site
        page.wait_for_url(re.compile(r".*/console/mcp\?mcp_app=browser-notes&status=connected$"))
        expect(page.locator("#mcp-outcome")).to_have_text("Browser Notes is connected.")
        expect(page.locator(".top .who")).to_have_text("end user")  # still signed in
        expect(page.locator("tr[data-slug='browser-notes']")).to_contain_text("Disconnect")
    finally:
        oauth.stop()


# Sends the form's fields twice at once from the page (same origin, the session cookie), as the browser would.
DOUBLE_SUBMIT = """async (selector) => {
  const form = document.querySelector(selector);
  const body = () => new URLSearchParams(new FormData(form));
  const send = () => fetch(form.action, {method: "POST", body: body(), redirect: "manual"});
  const answers = await Promise.all([send(), send()]);
  return answers.map((a) => (a.type === "opaqueredirect" ? 303 : a.status));
}"""


def test_a_budget_top_up_form_sent_twice_credits_once(page: Page, app: DemoApp) -> None:
    """The top-up form's one-time key: the form as rendered, sent twice at once from the page (what a double click or
    a browser resubmitting it does), credits the budget once."""
    sign_in(page, app, app.platform_key)
    page.click("nav.nav >> text=End users")
    page.fill("#u-ext", "double-click")
    page.click("form[method=post][action='/console/end-users'] button[type=submit]")
    page.goto(f"{app.url}/console/end-users?external_id=double-click")
    page.click("#end-users a >> text=double-click")
    page.fill("#b-max", "2")
    page.click("#budget button[type=submit] >> text=Create budget")
    expect(page.locator("#budget-max")).to_have_text("$2.00")
    page.fill("#bt-amount", "1.25")
    statuses = page.evaluate(DOUBLE_SUBMIT, "form[action$='/budget/topup']")
    assert statuses == [303, 303]  # both answered as the first: back to the page
    page.reload()
    expect(page.locator("#budget-max")).to_have_text("$3.25")
    user_id = page.url.split("/console/end-users/")[1].split("?")[0]
    with httpx.Client(base_url=app.url, headers={"Authorization": f"Bearer {app.platform_key}"}) as api:
        rows = api.get(f"/v1/platforms/{app.platform_id}/end-users/{user_id}/budget/transactions").json()["data"]
    topups = [r for r in rows if r["type"] == "topup"]
    assert [Decimal(str(r["amount_usd"])) for r in topups] == [Decimal("1.25")]
