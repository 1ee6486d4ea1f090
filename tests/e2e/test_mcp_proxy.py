"""The MCP proxy ``/v1/mcp/{slug}`` (SPEC §16.3) against the gateway served by uvicorn on SQLite and PostgreSQL, with
real MCP apps built with the ``mcp`` SDK (tests/support/mcp_app.py) and a real OAuth 2.1 authorization server, and
the ``mcp`` SDK's own client as the caller: ``tools/list`` filtered, every ``tools/call`` billed exactly once (ledger
rows, usage row, markup), ``isError`` results billed, failures not billed, the free tier, refusals as JSON-RPC
errors carrying the §3 error, key rules, tenancy, and the protocol versions an older client negotiates."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.conftest import STORES, database_url_for, make_settings
from tests.support.invariants import checked_gateway
from tests.support.mcp_app import McpApp
from tests.support.oauth_server import OAuthServer
from tests.support.servers import GatewayServer
from tests.support.webhook_receiver import WebhookReceiver

CALL_TIMEOUT_S = 1.5
MAX_RESULT_BYTES = 4096
PRICE = "0.002"  # USD per call; with 15 % markup the end user is charged 0.0023
MAX_BODY_BYTES = 65_536
ALLOWED = ["echo", "fail", "explode", "sleep", "big"]  # "secret" is left out


@pytest.fixture(scope="module", params=STORES)
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp = tmp_path_factory.mktemp("mcp-proxy")
    settings = make_settings(
        tmp,
        database_url_for(request.param, tmp, request),
        mcp_call_timeout_s=CALL_TIMEOUT_S,
        mcp_max_result_bytes=MAX_RESULT_BYTES,
        max_body_bytes=MAX_BODY_BYTES,
    )
    with checked_gateway(settings) as server:
        yield server


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


@dataclass
class Platform:
    id: str
    key: str
    client: httpx.Client
    gateway: GatewayServer

    @property
    def base(self) -> str:
        return f"/v1/platforms/{self.id}"

    def end_user(self, budget_usd: str | None = None) -> tuple[str, str]:
        created = _ok(self.client.post(f"{self.base}/end-users", json={"external_id": uuid.uuid4().hex}), 201)
        if budget_usd is not None:
            body = {"max_usd": budget_usd, "period": "monthly"}
            _ok(self.client.post(f"{self.base}/end-users/{created['id']}/budget", json=body), 201)
        return created["id"], created["api_key"]["raw_key"]

    def add_app(self, slug: str, server_url: str, **extra: Any) -> None:
        body = {"slug": slug, "name": slug.title(), "server_url": server_url, "auth": {"type": "none"}, **extra}
        body.setdefault("price_per_call_usd", PRICE)
        _ok(self.client.post(f"{self.base}/mcp/apps", json=body), 201)

    def logs(self, **params: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = _ok(self.client.get(f"{self.base}/logs", params={"limit": 100, **params}))["data"]
        return rows

    def wallet_rows(self) -> list[dict[str, Any]]:
        rows = _ok(self.client.get(f"{self.base}/wallet/transactions", params={"limit": 100}))["data"]
        return [r for r in rows if r["type"] == "usage"]

    def budget_rows(self, end_user_id: str) -> list[dict[str, Any]]:
        url = f"{self.base}/end-users/{end_user_id}/budget/transactions"
        return [r for r in _ok(self.client.get(url, params={"limit": 100}))["data"] if r["type"] == "inference"]

    def url(self, slug: str) -> str:
        return f"{self.gateway.url}/v1/mcp/{slug}"


def make_platform(gateway: GatewayServer, admin: httpx.Client, topup: str = "10", **settings: Any) -> Platform:
    body = {"name": f"Proxy {uuid.uuid4().hex[:8]}", "settings": {"markup_percentage": 15, **settings}}
    created = _ok(admin.post("/v1/admin/platforms", json=body), 201)
    platform_id, key = created["platform"]["id"], created["api_key"]["raw_key"]
    if Decimal(topup) > 0:
        _ok(admin.post(f"/v1/admin/platforms/{platform_id}/wallet/topup", json={"amount_usd": topup}))
    client = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Platform(platform_id, key, client, gateway)


@pytest.fixture(scope="module")
def platform(gateway: GatewayServer, admin: httpx.Client, app: McpApp) -> Iterator[Platform]:
    tenant = make_platform(gateway, admin, mcp_free_calls_per_month=0)
    tenant.add_app("tools", app.url, allowed_tools=ALLOWED)
    yield tenant
    tenant.client.close()


NewPlatform = Callable[..., Platform]


@pytest.fixture
def new_platform(gateway: GatewayServer, admin: httpx.Client) -> Iterator[NewPlatform]:
    """A fresh platform per call (``topup`` and settings as keywords), its API client closed after the test."""
    made: list[Platform] = []

    def make(**kwargs: Any) -> Platform:
        made.append(make_platform(gateway, admin, **kwargs))
        return made[-1]

    yield make
    for tenant in made:
        tenant.client.close()


@asynccontextmanager
async def mcp(url: str, key: str, mode: str = "auto") -> AsyncIterator[Client]:
    """The official SDK's client, as any MCP client would connect."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:  # type: ignore[arg-type]
        yield client


async def call(url: str, key: str, tool: str, arguments: dict[str, Any] | None = None) -> Any:
    async with mcp(url, key) as client:
        return await client.call_tool(tool, arguments or {})


async def refusal(url: str, key: str, tool: str, arguments: dict[str, Any] | None = None) -> MCPError:
    with pytest.raises((MCPError, BaseExceptionGroup)) as caught:
        await call(url, key, tool, arguments)
    return _mcp_error(caught.value)


def _mcp_error(exc: BaseException) -> MCPError:
    """The JSON-RPC error the SDK raised (its task groups wrap what ends the session)."""
    if isinstance(exc, MCPError):
        return exc
    assert isinstance(exc, BaseExceptionGroup), exc
    (inner,) = exc.exceptions
    return _mcp_error(inner)


def _mcp_rows(platform: Platform, **params: Any) -> list[dict[str, Any]]:
    return platform.logs(request_type="mcp", **params)


async def _settled(platform: Platform, count: int, **params: Any) -> list[dict[str, Any]]:
    """The usage rows once ``count`` exist (settlements are group-committed off the response path)."""
    for _ in range(200):
        rows = _mcp_rows(platform, **params)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} MCP usage rows, found {len(_mcp_rows(platform, **params))}")


# -- listing and billing ---------------------------------------------------------------------------------------------


async def test_tools_list_is_filtered_by_allowed_tools(platform: Platform) -> None:
    _, key = platform.end_user()
    async with mcp(platform.url("tools"), key) as client:
        listed = await client.list_tools()
    assert [t.name for t in listed.tools] == ALLOWED


async def test_a_tool_call_is_billed_exactly_once_with_markup(platform: Platform, app: McpApp) -> None:
    end_user_id, key = platform.end_user(budget_usd="1")
    result = await call(platform.url("tools"), key, "echo", {"text": "hello"})
    assert [c.text for c in result.content] == ["hello"] and not result.is_error
    (row,) = await _settled(platform, 1, end_user_id=end_user_id)
    assert row["request_type"] == "mcp" and row["model"] == "tools"
    assert (row["mcp_app"], row["mcp_tool"], row["mcp_free"]) == ("tools", "echo", False)
    assert (row["provider_id"], row["provider_model"]) == (None, None)
    assert row["status"] == "success" and row["error_code"] is None
    assert Decimal(str(row["cost_usd"])) == Decimal("0.002")
    assert Decimal(str(row["charged_usd"])) == Decimal("0.0023")
    assert row["uncollected_usd"] == 0 and row["latency_ms"] >= 0
    (wallet,) = [r for r in platform.wallet_rows() if r["request_id"] == row["request_id"]]
    assert Decimal(str(wallet["amount_usd"])) == Decimal("-0.002")
    (budget,) = platform.budget_rows(end_user_id)
    assert Decimal(str(budget["amount_usd"])) == Decimal("-0.0023")
    assert budget["request_id"] == row["request_id"]


async def test_an_is_error_result_is_billed(platform: Platform) -> None:
    end_user_id, key = platform.end_user(budget_usd="1")
    result = await call(platform.url("tools"), key, "fail")
    assert result.is_error and result.content[0].text == "the tool failed"
    (row,) = await _settled(platform, 1, end_user_id=end_user_id)
    assert row["status"] == "success" and row["mcp_tool"] == "fail"
    assert Decimal(str(row["cost_usd"])) == Decimal("0.002")
    assert [Decimal(str(r["amount_usd"])) for r in platform.budget_rows(end_user_id)] == [Decimal("-0.0023")]


async def test_a_platform_key_calls_none_apps_billed_to_the_wallet_only(platform: Platform) -> None:
    before = len(platform.wallet_rows())
    result = await call(platform.url("tools"), platform.key, "echo", {"text": "plat"})
    assert result.content[0].text == "plat"
    for _ in range(200):
        if len(platform.wallet_rows()) > before:
            break
        await asyncio.sleep(0.05)
    row = next(r for r in _mcp_rows(platform) if r["end_user_id"] is None)
    assert row["charged_usd"] is None and Decimal(str(row["cost_usd"])) == Decimal("0.002")


# -- failures: not billed -----------------------------------------------------------------------------------------


async def test_a_json_rpc_error_of_the_app_is_relayed_and_not_billed(platform: Platform) -> None:
    end_user_id, key = platform.end_user(budget_usd="1")
    error = await refusal(platform.url("tools"), key, "explode")
    assert error.code == -32602 and "Unknown tool" in error.message
    (row,) = await _settled(platform, 1, end_user_id=end_user_id)
    assert (row["status"], row["error_code"], row["cost_usd"], row["charged_usd"]) == ("error", "upstream_error", 0, 0)
    assert platform.budget_rows(end_user_id) == []


async def test_a_call_past_the_timeout_fails_unbilled_naming_the_limit(platform: Platform) -> None:
    end_user_id, key = platform.end_user(budget_usd="1")
    error = await refusal(platform.url("tools"), key, "sleep", {"s": CALL_TIMEOUT_S + 2})
    assert error.data["error"]["code"] == "upstream_timeout"
    assert "limit of 1.5 s" in error.data["error"]["message"]
    (row,) = await _settled(platform, 1, end_user_id=end_user_id)
    assert (row["status"], row["error_code"], row["cost_usd"]) == ("error", "upstream_timeout", 0)
    assert platform.budget_rows(end_user_id) == []


async def test_an_oversized_result_fails_unbilled_naming_the_limit(platform: Platform) -> None:
    end_user_id, key = platform.end_user(budget_usd="1")
    error = await refusal(platform.url("tools"), key, "big", {"n": MAX_RESULT_BYTES * 2})
    assert error.data["error"]["code"] == "upstream_error"
    assert f"limit of {MAX_RESULT_BYTES} bytes" in error.data["error"]["message"]
    (row,) = await _settled(platform, 1, end_user_id=end_user_id)
    assert (row["status"], row["error_code"], row["cost_usd"]) == ("error", "mcp_result_too_large", 0)
    assert platform.budget_rows(end_user_id) == []
    small = await call(platform.url("tools"), key, "big", {"n": 100})  # under the limit: delivered and billed
    assert len(small.content[0].text) == 100


async def test_an_unreachable_app_is_not_billed_and_writes_no_row(new_platform: NewPlatform) -> None:
    tenant = new_platform()
    tenant.add_app("gone", "http://127.0.0.1:9/mcp")
    end_user_id, key = tenant.end_user(budget_usd="1")
    error = await refusal(tenant.url("gone"), key, "echo")
    assert error.data["error"]["code"] == "upstream_error" and "could not be reached" in error.message
    await asyncio.sleep(0.5)
    assert _mcp_rows(tenant) == [] and tenant.wallet_rows() == []
    assert tenant.budget_rows(end_user_id) == []


async def test_a_redirecting_app_is_never_followed(platform: Platform, app: McpApp) -> None:
    platform.add_app("moved", app.redirect_url)
    _, key = platform.end_user()
    served = len(app.calls)
    error = await refusal(platform.url("moved"), key, "echo")
    assert "redirect" in error.message and len(app.calls) == served


async def test_budget_webhooks_of_mcp_calls_carry_the_calls_request_id(new_platform: NewPlatform, app: McpApp) -> None:
    """§11.1 has no per-call event: a billed MCP call on a budget fires ``budget.debited`` (opt-in) whose
    ``request_id`` is the call's usage row's; a call the free tier pays writes no ledger row and fires nothing."""
    receiver = WebhookReceiver().start()
    try:
        tenant = new_platform(mcp_free_calls_per_month=1)
        tenant.add_app("tools", app.url)
        hook = {"url": receiver.url, "events": ["budget.debited"]}
        _ok(tenant.client.post(f"{tenant.base}/webhooks", json=hook), 201)
        end_user_id, key = tenant.end_user(budget_usd="1")
        for text in ("free", "billed"):
            await call(tenant.url("tools"), key, "echo", {"text": text})
        rows = await _settled(tenant, 2, end_user_id=end_user_id)
        (billed,) = [r for r in rows if not r["mcp_free"]]
        received = await asyncio.to_thread(receiver.wait_for, lambda got: len(got) >= 1)
        await asyncio.sleep(1.0)  # a second event (there must be none) would have been delivered by now
        assert len(receiver.received) == 1
        event = received[0].json()
        assert event["event_type"] == "budget.debited"
        assert event["data"]["request_id"] == billed["request_id"] and event["data"]["end_user_id"] == end_user_id
        assert Decimal(str(event["data"]["amount_usd"])) == Decimal("-0.0023")
    finally:
        receiver.stop()


# -- refusals: JSON-RPC errors carrying the §3 error ---------------------------------------------------------------


async def test_a_tool_outside_allowed_tools_is_refused(platform: Platform, app: McpApp) -> None:
    _, key = platform.end_user()
    served = len(app.calls)
    error = await refusal(platform.url("tools"), key, "secret")
    assert error.code == -32602
    assert error.data == {
        "error": {
            "message": "The tool 'secret' is not allowed on the MCP app 'tools'.",
            "type": "invalid_request_error",
            "code": "invalid_request",
            "param": "params.name",
        }
    }
    assert len(app.calls) == served


async def test_an_exhausted_budget_is_refused_before_the_app(platform: Platform, app: McpApp) -> None:
    end_user_id, key = platform.end_user(budget_usd="0.002")  # the charge with markup is 0.0023
    served = len(app.calls)
    error = await refusal(platform.url("tools"), key, "echo", {"text": "x"})
    assert error.code == -32000
    assert error.data["error"]["code"] == "budget_exhausted" and error.data["error"]["type"] == "billing_error"
    assert len(app.calls) == served and _mcp_rows(platform, end_user_id=end_user_id) == []


async def test_an_empty_wallet_is_refused(new_platform: NewPlatform, app: McpApp) -> None:
    tenant = new_platform(topup="0", mcp_free_calls_per_month=0)
    tenant.add_app("tools", app.url)
    _, key = tenant.end_user()
    error = await refusal(tenant.url("tools"), key, "echo")
    assert error.data["error"]["code"] == "wallet_insufficient"


async def test_the_rate_limit_counts_each_call_as_one_request(new_platform: NewPlatform, app: McpApp) -> None:
    tenant = new_platform(rate_limits={"rpm": 1, "tpm": None, "rpd": None})
    tenant.add_app("tools", app.url)
    _, key = tenant.end_user()
    async with mcp(tenant.url("tools"), key) as client:
        await client.list_tools()  # relays are not MCP calls: not counted
        assert (await client.call_tool("echo", {"text": "1"})).content[0].text == "1"
        with pytest.raises(MCPError) as caught:
            await client.call_tool("echo", {"text": "2"})
        data = caught.value.data
    assert data["error"]["code"] == "rate_limit_exceeded" and data["retry_after"] >= 1


# -- the free tier -------------------------------------------------------------------------------------------------


async def test_the_first_calls_of_the_month_are_free(new_platform: NewPlatform, app: McpApp) -> None:
    tenant = new_platform(mcp_free_calls_per_month=2)
    tenant.add_app("tools", app.url)
    end_user_id, key = tenant.end_user(budget_usd="1")
    for n in range(3):
        await call(tenant.url("tools"), key, "echo", {"text": str(n)})
    rows = sorted(await _settled(tenant, 3), key=lambda r: r["created_at"])
    assert [r["mcp_free"] for r in rows].count(True) == 2
    free = [r for r in rows if r["mcp_free"]]
    assert all((r["cost_usd"], r["charged_usd"], r["status"]) == (0, 0, "success") for r in free)
    (billed,) = [r for r in rows if not r["mcp_free"]]
    assert Decimal(str(billed["cost_usd"])) == Decimal("0.002")
    (wallet,) = tenant.wallet_rows()  # free calls write no ledger rows
    assert wallet["request_id"] == billed["request_id"]
    (budget,) = tenant.budget_rows(end_user_id)
    assert budget["request_id"] == billed["request_id"]


async def test_concurrent_calls_never_get_more_free_calls_than_the_tier(new_platform: NewPlatform, app: McpApp) -> None:
    tenant = new_platform(mcp_free_calls_per_month=3)
    tenant.add_app("tools", app.url)
    _, key = tenant.end_user()
    await asyncio.gather(*(call(tenant.url("tools"), key, "echo", {"text": str(n)}) for n in range(8)))
    rows = await _settled(tenant, 8)
    assert sorted(r["mcp_free"] for r in rows) == [False] * 5 + [True] * 3
    assert len(tenant.wallet_rows()) == 5


async def test_a_failed_call_gives_its_free_slot_back(new_platform: NewPlatform, app: McpApp) -> None:
    tenant = new_platform(mcp_free_calls_per_month=1)
    tenant.add_app("tools", app.url)
    _, key = tenant.end_user()
    await refusal(tenant.url("tools"), key, "explode")  # reached the app, nothing delivered: not billed
    await call(tenant.url("tools"), key, "echo", {"text": "now"})
    rows = await _settled(tenant, 2)
    ok = next(r for r in rows if r["status"] == "success")
    assert ok["mcp_free"] is True and ok["cost_usd"] == 0


# -- keys, OAuth apps and tenancy ---------------------------------------------------------------------------------


def _connect(gateway: GatewayServer, key: str, slug: str) -> None:
    """The end user connects the app as in a browser: connect, the authorization server, the callback."""
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as me:
        started = _ok(me.post(f"/v1/me/mcp/apps/{slug}/connect"))
    callback = httpx.get(started["authorize_url"], follow_redirects=False).headers["location"]
    assert httpx.get(callback, follow_redirects=False).status_code == 200


def _mcp_config(gateway: GatewayServer, key: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as me:
        apps: list[dict[str, Any]] = _ok(me.get("/v1/me/mcp-config"))["apps"]
    return apps


def _revoke(oauth: OAuthServer, token: str) -> None:
    revoked = httpx.post(oauth.revocation_url, data={"token": token}, auth=(oauth.client_id, oauth.client_secret))
    assert revoked.status_code == 200


def _add_notes(platform: Platform, oauth: OAuthServer, oauth_app: McpApp) -> str:
    auth = oauth.app_auth(["notes.read"])
    body = {"slug": "notes", "name": "Notes", "server_url": oauth_app.url, "auth": auth, "price_per_call_usd": PRICE}
    _ok(platform.client.post(f"{platform.base}/mcp/apps", json=body), 201)
    return "notes"


@pytest.fixture(scope="module")
def notes(platform: Platform, oauth: OAuthServer, oauth_app: McpApp) -> str:
    return _add_notes(platform, oauth, oauth_app)


async def test_an_oauth_app_gets_the_end_users_token(
    platform: Platform, notes: str, oauth: OAuthServer, oauth_app: McpApp
) -> None:
    end_user_id, key = platform.end_user(budget_usd="1")
    _connect(platform.gateway, key, notes)
    result = await call(platform.url(notes), key, "echo", {"text": "mine"})
    assert result.content[0].text == "mine"
    token = oauth_app.authorizations[-1]
    assert token is not None and oauth.is_valid(token.removeprefix("Bearer "))
    (row,) = await _settled(platform, 1, end_user_id=end_user_id)
    assert (row["mcp_app"], row["mcp_tool"]) == ("notes", "echo")


async def test_a_token_the_app_refuses_is_refreshed_once_and_the_call_sent_again(
    platform: Platform, notes: str, oauth: OAuthServer, oauth_app: McpApp
) -> None:
    end_user_id, key = platform.end_user(budget_usd="1")
    _connect(platform.gateway, key, notes)
    await call(platform.url(notes), key, "echo", {"text": "first"})
    stale = (oauth_app.authorizations[-1] or "").removeprefix("Bearer ")
    _revoke(oauth, stale)
    assert not oauth.is_valid(stale)  # the app now answers 401 to it
    refreshes, served = oauth.refreshes, len(oauth_app.calls)
    result = await call(platform.url(notes), key, "echo", {"text": "again"})
    assert result.content[0].text == "again"
    assert oauth.refreshes == refreshes + 1 and len(oauth_app.calls) == served + 1
    fresh = (oauth_app.authorizations[-1] or "").removeprefix("Bearer ")
    assert fresh != stale and oauth.is_valid(fresh)
    rows = await _settled(platform, 2, end_user_id=end_user_id)
    assert [r["status"] for r in rows] == ["success", "success"]  # the refused attempt was not billed
    assert len(platform.budget_rows(end_user_id)) == 2


async def test_the_apps_error_messages_are_scrubbed_of_credentials(
    platform: Platform, notes: str, oauth_app: McpApp
) -> None:
    _, key = platform.end_user()
    _connect(platform.gateway, key, notes)
    error = await refusal(platform.url(notes), key, "leak")
    token = (oauth_app.authorizations[-1] or "").removeprefix("Bearer ")
    assert token and token not in error.message and "sk-live" not in error.message
    assert error.message.startswith("refused [redacted]") and error.code == -32602


async def test_an_oauth_app_without_a_connection_is_refused(platform: Platform, notes: str) -> None:
    _, key = platform.end_user()
    error = await refusal(platform.url(notes), key, "echo")
    assert error.data["error"]["code"] == "mcp_app_not_connected"
    assert "/v1/me/mcp-config" in error.data["error"]["message"]


async def test_a_connection_is_used_for_its_end_user_only(
    platform: Platform, notes: str, oauth: OAuthServer, oauth_app: McpApp, new_platform: NewPlatform
) -> None:
    """A's connection is never lent: not to another end user of A's platform, nor to an end user of another platform
    with the same external id and an app of the same slug on the same authorization server."""
    external_id = uuid.uuid4().hex
    owner = _ok(platform.client.post(f"{platform.base}/end-users", json={"external_id": external_id}), 201)
    _connect(platform.gateway, owner["api_key"]["raw_key"], notes)
    other = new_platform(mcp_free_calls_per_month=0)
    _add_notes(other, oauth, oauth_app)
    twin = _ok(other.client.post(f"{other.base}/end-users", json={"external_id": external_id}), 201)
    _, neighbour = platform.end_user()
    served, seen = len(oauth_app.calls), len(oauth_app.authorizations)
    for url, key in ((platform.url(notes), neighbour), (other.url(notes), twin["api_key"]["raw_key"])):
        error = await refusal(url, key, "echo")
        assert error.data["error"]["code"] == "mcp_app_not_connected"
    assert len(oauth_app.calls) == served and len(oauth_app.authorizations) == seen  # no token ever left
    for key in (neighbour, twin["api_key"]["raw_key"]):
        (entry,) = [a for a in _mcp_config(platform.gateway, key) if a["slug"] == notes]
        assert entry["connected"] is False
    assert _mcp_rows(other) == []


async def test_a_platform_key_cannot_use_an_oauth_app(platform: Platform, notes: str) -> None:
    error = await refusal(platform.url(notes), platform.key, "echo")
    assert error.data["error"]["code"] == "wrong_key_type"


def test_unknown_or_foreign_slugs_and_bad_keys_are_http_errors(new_platform: NewPlatform, platform: Platform) -> None:
    other = new_platform()
    _, other_key = other.end_user()
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": _init_params("2025-06-18")}
    headers = {"Accept": "application/json, text/event-stream"}
    foreign = httpx.post(platform.url("tools"), json=init, headers={**headers, "Authorization": f"Bearer {other_key}"})
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "not_found"
    missing = httpx.post(platform.url("nope"), json=init, headers={**headers, "Authorization": f"Bearer {other_key}"})
    assert missing.status_code == 404
    anonymous = httpx.post(platform.url("tools"), json=init, headers=headers)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_api_key"
    operator = f"Bearer {platform.gateway.settings.admin_key}"
    as_operator = httpx.post(platform.url("tools"), json=init, headers={**headers, "Authorization": operator})
    assert as_operator.status_code == 403 and as_operator.json()["error"]["code"] == "wrong_key_type"
    end_user_id, key = platform.end_user()
    _ok(platform.client.patch(f"{platform.base}/end-users/{end_user_id}", json={"is_active": False}))
    inactive = httpx.post(platform.url("tools"), json=init, headers={**headers, "Authorization": f"Bearer {key}"})
    assert inactive.status_code == 403 and inactive.json()["error"]["code"] == "forbidden"


def test_a_body_over_the_limit_is_a_413_before_the_sdk_reads_it(platform: Platform, app: McpApp) -> None:
    _, key = platform.end_user()
    served = len(app.calls)
    arguments = {"text": "x" * MAX_BODY_BYTES}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": arguments}}
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    answer = httpx.post(platform.url("tools"), json=body, headers=headers)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"
    assert len(app.calls) == served


# -- protocol versions ---------------------------------------------------------------------------------------------


def _init_params(version: str) -> dict[str, Any]:
    return {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "old-client", "version": "0"}}


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
def test_older_protocol_versions_negotiate_and_call(platform: Platform, version: str) -> None:
    _, key = platform.end_user()
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    with httpx.Client(headers=headers, timeout=30) as http:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": _init_params(version)}
        answer = http.post(platform.url("tools"), json=init)
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"]["protocolVersion"] == version
        assert "tools" in answer.json()["result"]["capabilities"]
        versioned = {"MCP-Protocol-Version": version}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert http.post(platform.url("tools"), json=note, headers=versioned).status_code == 202
        body = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": version}},
        }
        called = http.post(platform.url("tools"), json=body, headers=versioned)
        assert called.status_code == 200, called.text
        assert called.json()["result"]["content"] == [{"type": "text", "text": version}]


async def test_the_sdk_client_in_legacy_and_modern_modes(platform: Platform) -> None:
    _, key = platform.end_user()
    async with mcp(platform.url("tools"), key, mode="legacy") as legacy:
        assert legacy.protocol_version == "2025-11-25"
        assert (await legacy.call_tool("echo", {"text": "old"})).content[0].text == "old"
    async with mcp(platform.url("tools"), key) as modern:
        assert modern.protocol_version == "2026-07-28"
        assert (await modern.call_tool("echo", {"text": "new"})).content[0].text == "new"


async def test_after_discovery_each_call_is_one_request_to_the_app(new_platform: NewPlatform, app: McpApp) -> None:
    """The proxy remembers a modern app's ``server/discover`` result, and never lists the tools to check a result:
    every call after the first is exactly one HTTP request to the app."""
    tenant = new_platform(mcp_free_calls_per_month=0)
    tenant.add_app("tools", app.url)
    _, key = tenant.end_user()
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(timeout=30) as http:  # tools/call alone (an SDK client also lists the tools)
        for i, text in enumerate(("first", "second", "third")):
            seen = len(app.authorizations)
            params = {"name": "echo", "arguments": {"text": text}}
            body = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params}
            answer = _ok(await http.post(tenant.url("tools"), json=body, headers=headers))
            assert answer["result"]["content"][0]["text"] == text
            if i > 0:
                assert len(app.authorizations) == seen + 1
    assert len(await _settled(tenant, 3)) == 3


async def test_an_app_changed_or_deleted_is_seen_by_the_next_call(new_platform: NewPlatform, app: McpApp) -> None:
    """The proxy caches app rows; a change through the API is seen at once by the instance that made it."""
    tenant = new_platform(mcp_free_calls_per_month=0)
    tenant.add_app("tools", app.url)
    _, key = tenant.end_user()
    await call(tenant.url("tools"), key, "echo", {"text": "x"})
    (listed,) = _ok(tenant.client.get(f"{tenant.base}/mcp/apps"))["data"]
    path = f"{tenant.base}/mcp/apps/{listed['id']}"
    _ok(tenant.client.patch(path, json={"allowed_tools": ["fail"]}))
    assert (await refusal(tenant.url("tools"), key, "echo", {"text": "x"})).data["error"]["param"] == "params.name"
    _ok(tenant.client.patch(path, json={"is_active": False}))
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "fail", "arguments": {}}}
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.post(tenant.url("tools"), json=body, headers=headers)).status_code == 404
        _ok(tenant.client.patch(path, json={"is_active": True}))
        assert (await http.post(tenant.url("tools"), json=body, headers=headers)).status_code == 200
        _ok(tenant.client.delete(path), 204)
        assert (await http.post(tenant.url("tools"), json=body, headers=headers)).status_code == 404


async def test_prompts_are_relayed_unbilled(platform: Platform) -> None:
    end_user_id, key = platform.end_user()
    async with mcp(platform.url("tools"), key) as client:
        prompts = await client.list_prompts()
    assert [p.name for p in prompts.prompts] == ["greet"]
    await asyncio.sleep(0.3)
    assert _mcp_rows(platform, end_user_id=end_user_id) == []


async def test_a_batch_is_refused_so_each_call_has_its_own_request_id(platform: Platform, app: McpApp) -> None:
    """A POST carries one JSON-RPC message (the SDK refuses 2025-03-26 batches), so one HTTP request id bills at most
    one MCP call: holds and usage rows stay one per request id."""
    end_user_id, key = platform.end_user()
    served = len(app.calls)
    one = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "a"}}}
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-03-26"}
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}", **headers}) as http:
        answer = await http.post(platform.url("tools"), json=[one, {**one, "id": 2}])
    assert answer.status_code == 400 and answer.json()["error"]["code"] == -32602
    await asyncio.sleep(0.3)
    assert len(app.calls) == served and _mcp_rows(platform, end_user_id=end_user_id) == []
