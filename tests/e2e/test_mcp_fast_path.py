"""The MCP proxy's fast path (issue 16, ``http/mcp/fast_call.py`` and ``providers/mcp/exchange.py``) against the gateway
served by uvicorn on SQLite and PostgreSQL and real MCP apps built with the ``mcp`` SDK: a single ``tools/call`` at
every protocol version is answered without the SDK's session manager and sent to the app as one POST over aiohttp
once the app's ``server/discover`` answer is known, with the same answers, billing and failures as the SDK path: the
app's JSON-RPC errors, hung apps, oversized results, refusals carrying the §3 error, and an app answering with SSE.
Everything else still goes through the SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import Receive, Scope, Send

from tests.conftest import STORES, database_url_for, make_settings
from tests.e2e.test_mcp_proxy import NewPlatform, Platform, make_platform
from tests.support.invariants import checked_gateway
from tests.support.mcp_app import McpApp
from tests.support.servers import GatewayServer

CALL_TIMEOUT_S = 1.5
MAX_RESULT_BYTES = 4096
MODERN = "2026-07-28"
VERSIONS = [None, "2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", MODERN]  # None: no version header
SERVER_INFO = "io.modelcontextprotocol/serverInfo"


@pytest.fixture(scope="module", params=STORES)
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp = tmp_path_factory.mktemp("mcp-fast")
    settings = make_settings(
        tmp,
        database_url_for(request.param, tmp, request),
        mcp_call_timeout_s=CALL_TIMEOUT_S,
        mcp_max_result_bytes=MAX_RESULT_BYTES,
    )
    with checked_gateway(settings) as server:
        yield server


@pytest.fixture(scope="module")
def streaming_app() -> Iterator[McpApp]:
    server = McpApp(streaming=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def legacy_app() -> Iterator[McpApp]:
    server = McpApp(legacy=True).start()
    yield server
    server.stop()


@pytest.fixture
def new_platform(gateway: GatewayServer, admin: httpx.Client) -> Iterator[NewPlatform]:
    made: list[Platform] = []

    def make(**kwargs: Any) -> Platform:
        made.append(make_platform(gateway, admin, **kwargs))
        return made[-1]

    yield make
    for tenant in made:
        tenant.client.close()


@pytest.fixture
def sdk_served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The proxy requests the SDK's session manager handled (the apps' own SDK servers are not counted)."""
    served: list[str] = []
    original = StreamableHTTPSessionManager.handle_request

    async def counting(self: StreamableHTTPSessionManager, scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope.get("path", "")).startswith("/v1/mcp/"):
            served.append(str(scope.get("method")))
        await original(self, scope, receive, send)

    monkeypatch.setattr(StreamableHTTPSessionManager, "handle_request", counting)
    return served


def tools_call(version: str | None, name: str, arguments: dict[str, Any], request_id: int = 7) -> dict[str, Any]:
    """The body and headers of a raw ``tools/call`` as a client at ``version`` sends it."""
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    headers = {"Accept": "application/json, text/event-stream"}
    if version == MODERN:
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "raw-client", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        headers |= {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name}
    elif version is not None:
        headers["MCP-Protocol-Version"] = version
    return {"json": {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}, "headers": headers}


async def post(tenant: Platform, key: str, request: dict[str, Any], slug: str = "tools") -> httpx.Response:
    headers = {**request["headers"], "Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.post(tenant.url(slug), json=request["json"], headers=headers)


async def warmed(tenant: Platform, key: str, app: McpApp, slug: str = "tools") -> None:
    """One call first: the proxy's SDK session discovers the app (2026-07-28), so later calls go out directly."""
    answer = await post(tenant, key, tools_call(None, "echo", {"text": "warm"}), slug)
    assert answer.status_code == 200 and answer.json()["result"]["content"][0]["text"] == "warm", answer.text


def sent_directly(app: McpApp, before: int) -> bool:
    """Whether the app's requests since ``before`` were exactly one, sent by aiohttp (not the SDK's httpx2 client)."""
    agents = app.agents[before:]
    return len(agents) == 1 and "aiohttp" in (agents[0] or "")


async def rows(tenant: Platform, end_user_id: str, count: int) -> list[dict[str, Any]]:
    for _ in range(200):
        found = tenant.logs(request_type="mcp", end_user_id=end_user_id)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} MCP usage rows")


def billed_tenant(new_platform: NewPlatform, app: McpApp, **extra: Any) -> Platform:
    tenant = new_platform(mcp_free_calls_per_month=0)
    tenant.add_app("tools", app.url, **extra)
    return tenant


# -- every version ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_tools_call_at_every_version_is_answered_without_the_sdk(
    new_platform: NewPlatform, app: McpApp, sdk_served: list[str], version: str | None
) -> None:
    tenant = billed_tenant(new_platform, app)
    end_user_id, key = tenant.end_user(budget_usd="1")
    await warmed(tenant, key, app)
    before = len(app.agents)
    answer = await post(tenant, key, tools_call(version, "echo", {"text": f"at {version}"}))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json", answer.text
    reply = answer.json()
    assert (reply["jsonrpc"], reply["id"]) == ("2.0", 7)
    result = reply["result"]
    assert result["content"] == [{"type": "text", "text": f"at {version}"}] and result["isError"] is False
    if version == MODERN:  # the 2026-07-28 shape: resultType and the proxy's own serverInfo, never the app's
        assert result["resultType"] == "complete"
        assert result["_meta"][SERVER_INFO]["name"] == "tollway-mcp-proxy"
    else:
        assert "resultType" not in result and "_meta" not in result
    assert sdk_served == [] and sent_directly(app, before)
    billed = await rows(tenant, end_user_id, 2)
    assert [(r["status"], Decimal(str(r["cost_usd"]))) for r in billed] == [("success", Decimal("0.002"))] * 2
    budget = [Decimal(str(r["amount_usd"])) for r in tenant.budget_rows(end_user_id)]
    assert budget == [Decimal("-0.0023")] * 2


async def test_params_the_version_does_not_accept_are_invalid_params(
    new_platform: NewPlatform, app: McpApp, sdk_served: list[str]
) -> None:
    tenant = billed_tenant(new_platform, app)
    end_user_id, key = tenant.end_user(budget_usd="1")
    served = len(app.calls)
    request = tools_call("2025-06-18", "echo", {})
    request["json"]["params"] = {"arguments": {"text": "no name"}}
    answer = await post(tenant, key, request)
    assert answer.status_code == 200 and answer.json()["error"]["code"] == -32602
    assert sdk_served == [] and len(app.calls) == served
    await asyncio.sleep(0.3)
    assert tenant.logs(request_type="mcp", end_user_id=end_user_id) == []


# -- the app's failures, unbilled ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2025-03-26", MODERN])
async def test_a_json_rpc_error_of_the_app_is_relayed_unbilled(
    new_platform: NewPlatform, app: McpApp, sdk_served: list[str], version: str
) -> None:
    tenant = billed_tenant(new_platform, app)
    end_user_id, key = tenant.end_user(budget_usd="1")
    await warmed(tenant, key, app)
    before = len(app.agents)
    answer = await post(tenant, key, tools_call(version, "explode", {}))
    assert answer.status_code == (400 if version == MODERN else 200), answer.text  # the SDK's status table
    error = answer.json()["error"]
    assert error["code"] == -32602 and "Unknown tool" in error["message"] and "data" not in error
    assert sdk_served == [] and sent_directly(app, before)
    failed = [r for r in await rows(tenant, end_user_id, 2) if r["status"] == "error"]
    assert [(r["error_code"], r["cost_usd"], r["mcp_tool"]) for r in failed] == [("upstream_error", 0, "explode")]
    assert [Decimal(str(r["amount_usd"])) for r in tenant.budget_rows(end_user_id)] == [Decimal("-0.0023")]


async def test_a_hung_app_fails_at_the_call_timeout_unbilled(
    new_platform: NewPlatform, app: McpApp, sdk_served: list[str]
) -> None:
    tenant = billed_tenant(new_platform, app)
    end_user_id, key = tenant.end_user(budget_usd="1")
    await warmed(tenant, key, app)
    before = len(app.agents)
    answer = await post(tenant, key, tools_call(MODERN, "sleep", {"s": CALL_TIMEOUT_S + 3}))
    assert answer.status_code == 200, answer.text
    error = answer.json()["error"]
    assert error["code"] == -32000 and error["data"]["error"]["code"] == "upstream_timeout"
    assert f"limit of {CALL_TIMEOUT_S} s" in error["data"]["error"]["message"]
    assert sdk_served == [] and sent_directly(app, before)
    failed = [r for r in await rows(tenant, end_user_id, 2) if r["status"] == "error"]
    assert [(r["error_code"], r["cost_usd"], r["mcp_tool"]) for r in failed] == [("upstream_timeout", 0, "sleep")]
    assert [Decimal(str(r["amount_usd"])) for r in tenant.budget_rows(end_user_id)] == [Decimal("-0.0023")]


async def test_an_oversized_result_fails_unbilled_naming_the_limit(
    new_platform: NewPlatform, app: McpApp, sdk_served: list[str]
) -> None:
    tenant = billed_tenant(new_platform, app)
    end_user_id, key = tenant.end_user(budget_usd="1")
    await warmed(tenant, key, app)
    before = len(app.agents)
    answer = await post(tenant, key, tools_call("2025-11-25", "big", {"n": MAX_RESULT_BYTES * 2}))
    error = answer.json()["error"]
    assert error["code"] == -32000 and error["data"]["error"]["code"] == "upstream_error"
    assert f"limit of {MAX_RESULT_BYTES} bytes" in error["data"]["error"]["message"]
    assert sdk_served == [] and sent_directly(app, before)
    failed = [r for r in await rows(tenant, end_user_id, 2) if r["status"] == "error"]
    assert [(r["error_code"], r["cost_usd"]) for r in failed] == [("mcp_result_too_large", 0)]
    await warmed(tenant, key, app)  # discovered again after the failure
    before = len(app.agents)
    small = await post(tenant, key, tools_call("2025-11-25", "big", {"n": 100}))
    assert len(small.json()["result"]["content"][0]["text"]) == 100 and sent_directly(app, before)
    await rows(tenant, end_user_id, 4)  # each usage row commits with its ledger rows
    budget = [Decimal(str(r["amount_usd"])) for r in tenant.budget_rows(end_user_id)]
    assert budget == [Decimal("-0.0023")] * 3  # two warm-up calls and the small result; the oversized one is free


# -- refusals --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, MODERN])
async def test_refusals_are_json_rpc_errors_carrying_the_error_body(
    new_platform: NewPlatform, app: McpApp, sdk_served: list[str], version: str | None
) -> None:
    tenant = billed_tenant(new_platform, app, allowed_tools=["echo"])
    end_user_id, key = tenant.end_user(budget_usd="0.002")  # the charge with markup is 0.0023
    served = len(app.calls)
    broke = await post(tenant, key, tools_call(version, "echo", {"text": "x"}))
    assert broke.status_code == 200, broke.text
    error = broke.json()["error"]
    assert error["code"] == -32000 and error["message"] == error["data"]["error"]["message"]
    assert error["data"]["error"]["code"] == "budget_exhausted" and error["data"]["error"]["type"] == "billing_error"
    outside = await post(tenant, key, tools_call(version, "secret", {}))
    assert outside.status_code == (400 if version == MODERN else 200), outside.text
    error = outside.json()["error"]
    assert error["code"] == -32602 and error["data"]["error"]["param"] == "params.name"
    assert sdk_served == [] and len(app.calls) == served
    await asyncio.sleep(0.3)
    assert tenant.logs(request_type="mcp", end_user_id=end_user_id) == []


# -- an app answering with SSE ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2025-06-18", MODERN])
async def test_an_app_answering_with_sse(
    new_platform: NewPlatform, streaming_app: McpApp, sdk_served: list[str], version: str
) -> None:
    tenant = billed_tenant(new_platform, streaming_app)
    end_user_id, key = tenant.end_user(budget_usd="1")
    await warmed(tenant, key, streaming_app)
    before = len(streaming_app.agents)
    answer = await post(tenant, key, tools_call(version, "progress", {"text": "streamed"}))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json", answer.text
    assert answer.json()["result"]["content"] == [{"type": "text", "text": "streamed"}]
    assert sdk_served == [] and sent_directly(streaming_app, before)
    billed = await rows(tenant, end_user_id, 2)
    assert sorted(r["mcp_tool"] for r in billed) == ["echo", "progress"]
    assert [Decimal(str(r["amount_usd"])) for r in tenant.budget_rows(end_user_id)] == [Decimal("-0.0023")] * 2


# -- an app of the handshake era ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, MODERN])
async def test_a_handshake_era_app_is_called_in_one_kept_session(
    new_platform: NewPlatform, legacy_app: McpApp, sdk_served: list[str], version: str | None
) -> None:
    """An app that speaks only the ``initialize`` handshake (stateful, with ``Mcp-Session-Id``): after the SDK found
    that out, the proxy opens one session of its own and sends each later call as one POST in it."""
    tenant = billed_tenant(new_platform, legacy_app)
    end_user_id, key = tenant.end_user(budget_usd="1")
    await warmed(tenant, key, legacy_app)
    start = len(legacy_app.methods)
    agents = len(legacy_app.agents)
    for i in range(3):
        answer = await post(tenant, key, tools_call(version, "echo", {"text": f"call {i}"}))
        assert answer.json()["result"]["content"] == [{"type": "text", "text": f"call {i}"}], answer.text
    methods, sessions = legacy_app.methods[start:], legacy_app.sessions[start:]
    assert methods[-3:] == ["tools/call"] * 3  # after a handshake, unless an earlier test left the session open
    assert methods[:-3] in ([], ["initialize", "notifications/initialized"])
    assert sessions[-1] is not None and set(sessions[-3:]) == {sessions[-1]}
    assert sdk_served == [] and all("aiohttp" in (a or "") for a in legacy_app.agents[agents:])
    billed = await rows(tenant, end_user_id, 4)
    assert [Decimal(str(r["cost_usd"])) for r in billed] == [Decimal("0.002")] * 4


# -- everything else goes through the SDK ----------------------------------------------------------------------------


async def test_other_requests_still_go_through_the_sdk(
    new_platform: NewPlatform, app: McpApp, sdk_served: list[str]
) -> None:
    tenant = billed_tenant(new_platform, app)
    _, key = tenant.end_user(budget_usd="1")
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "c", "version": "0"}},
    }
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    one = tools_call("2025-03-26", "echo", {"text": "a"})
    unknown = tools_call(None, "echo", {"text": "a"})
    unknown["headers"]["MCP-Protocol-Version"] = "2099-01-01"
    requests: list[dict[str, Any]] = [
        {"json": init, "headers": one["headers"]},
        {"json": listing, "headers": {**one["headers"], "MCP-Protocol-Version": "2025-06-18"}},
        {"json": [one["json"], {**one["json"], "id": 8}], "headers": one["headers"]},  # a batch
        unknown,
    ]
    statuses = [(await post(tenant, key, request)).status_code for request in requests]
    assert statuses[:2] == [200, 200] and all(400 <= s < 500 for s in statuses[2:]), statuses
    assert sdk_served == ["POST"] * 4


async def test_a_session_the_app_forgot_is_opened_again_and_the_call_sent_once_more(
    new_platform: NewPlatform, sdk_served: list[str]
) -> None:
    app = McpApp(legacy=True).start()
    try:
        tenant = billed_tenant(new_platform, app)
        end_user_id, key = tenant.end_user(budget_usd="1")
        await warmed(tenant, key, app)
        first = await post(tenant, key, tools_call("2025-06-18", "echo", {"text": "before"}))
        assert first.json()["result"]["content"][0]["text"] == "before"
        app.stop()  # a restart: the app forgets its sessions
        app.start()
        start = len(app.methods)
        again = await post(tenant, key, tools_call("2025-06-18", "echo", {"text": "after"}))
        assert again.json()["result"]["content"][0]["text"] == "after", again.text
    finally:
        app.stop()
    methods = app.methods[start:]
    assert methods == ["tools/call", "initialize", "notifications/initialized", "tools/call"]
    assert app.calls.count("echo") == 3 and sdk_served == []  # the refused first try was never served
    billed = await rows(tenant, end_user_id, 3)
    assert [Decimal(str(r["cost_usd"])) for r in billed] == [Decimal("0.002")] * 3
