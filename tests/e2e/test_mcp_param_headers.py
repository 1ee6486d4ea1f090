"""MCP 2026-07-28 header parameters (``x-mcp-header`` -> ``Mcp-Param-*``) end to end: the gateway served by uvicorn on
SQLite and PostgreSQL, a real MCP app built with the ``mcp`` SDK whose ``locate`` tool marks ``region`` as
``x-mcp-header: Region`` (its SDK server refuses a call without the matching header, and the tool checks it too),
the fake upstream's agent model, and the ``openai`` SDK, raw HTTP and the ``mcp`` SDK as clients.

- The gateway's own Responses loop sends the header the app asks for (Base64-wrapped for a non-ASCII value), and the
  call is billed once.
- The proxy refuses a 2026-07-28 caller's mismatching or missing header with -32020 and HTTP 400, unbilled and
  without contacting the app; a matching one (the ``mcp`` SDK's client sends it by itself) is billed exactly once.
- A handshake-era caller (no such headers in its revision) of a tool the gateway has not listed yet is still served:
  the app refuses the header-less call, the gateway lists the tools and sends it once more, billed once.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import STORES, database_url_for, make_settings
from tests.e2e.test_mcp_fast_path import MODERN, post, rows, tools_call
from tests.e2e.test_mcp_proxy import Platform, _connect, make_platform, mcp
from tests.support.invariants import checked_gateway
from tests.support.mcp_app import McpApp
from tests.support.oauth_server import OAuthServer
from tests.support.seed import FAKE_PROVIDER_KEY, create_model, create_provider
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

PRICE = "0.002"  # USD per MCP call; the end user pays 15 % more
REGION = "Zürich"
LOCATE = f'fake/agent?name=tools__locate&args={{"region":"{REGION}","query":"rain"}}&in=5&out=10'


@pytest.fixture(scope="module", params=STORES)
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp = tmp_path_factory.mktemp("mcp-params")
    settings = make_settings(tmp, database_url_for(request.param, tmp, request), mcp_call_timeout_s=5)
    with checked_gateway(settings) as server:
        yield server


@pytest.fixture
def header_app() -> Iterator[McpApp]:
    """A fresh app per test, so that the gateway has never listed its tools before the test."""
    server = McpApp(param_headers=True).start()
    yield server
    server.stop()


@pytest.fixture
def platform(gateway: GatewayServer, admin: httpx.Client, header_app: McpApp) -> Iterator[Platform]:
    tenant = make_platform(gateway, admin, mcp_free_calls_per_month=0)
    tenant.add_app("tools", header_app.url)
    yield tenant
    tenant.client.close()


def _billed(tenant: Platform, end_user_id: str) -> list[tuple[str, str, Decimal]]:
    return [(r["status"], r["mcp_tool"], Decimal(str(r["cost_usd"]))) for r in tenant.logs(request_type="mcp")]


def _budget(tenant: Platform, end_user_id: str) -> list[Decimal]:
    return [Decimal(str(r["amount_usd"])) for r in tenant.budget_rows(end_user_id)]


def test_the_responses_loop_sends_the_header_a_tool_asks_for(
    gateway: GatewayServer,
    admin: httpx.Client,
    fake_upstream: FakeUpstreamThread,
    platform: Platform,
    header_app: McpApp,
) -> None:
    provider = create_provider(admin, fake_upstream.base_url)
    slug = f"locator-{uuid.uuid4().hex[:6]}"
    create_model(admin, provider["id"], slug, LOCATE, input_price_per_mtok="100", output_price_per_mtok="1000")
    config = {"provider_id": provider["id"], "api_key": FAKE_PROVIDER_KEY}
    assert platform.client.post(f"{platform.base}/llm-configs", json=config).status_code == 201
    end_user_id, key = platform.end_user(budget_usd="5")
    tool: Any = {
        "type": "mcp",
        "server_label": "tools",
        "server_url": platform.url("tools"),
        "require_approval": "never",
    }
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=60) as sdk:
        response = sdk.responses.create(model=slug, input="Where does it rain?", tools=[tool])
    assert response.status == "completed", response
    called = [item for item in response.output if item.type == "mcp_call"]
    assert [(c.name, c.output, c.error) for c in called] == [("locate", f"rain in {REGION}", None)]  # type: ignore[union-attr]
    encoded = "=?base64?" + base64.b64encode(REGION.encode()).decode() + "?="
    assert header_app.regions == [encoded]  # once, Base64-wrapped: the value is not ASCII
    billed = _billed(platform, end_user_id)
    assert billed == [("success", "locate", Decimal(PRICE))]
    assert Decimal("-0.0023") in _budget(platform, end_user_id)


async def _listed(tenant: Platform, key: str) -> None:
    """The caller lists the tools through the proxy (as every MCP client does first): the gateway learns the schema."""
    async with mcp(tenant.url("tools"), key, mode=MODERN) as client:
        listing = await client.list_tools()
    assert "locate" in [t.name for t in listing.tools]


def _locate(region_header: str | None, region: str = "us-west1") -> dict[str, Any]:
    request = tools_call(MODERN, "locate", {"region": region, "query": "q"})
    if region_header is not None:
        request["headers"]["Mcp-Param-Region"] = region_header
    return request


@pytest.mark.parametrize("header", ["eu-west1", None, "=?base64?not base64?="])
async def test_the_proxy_refuses_a_header_that_does_not_match_unbilled(
    platform: Platform, header_app: McpApp, header: str | None
) -> None:
    end_user_id, key = platform.end_user(budget_usd="1")
    await _listed(platform, key)
    served = len(header_app.calls)
    answer = await post(platform, key, _locate(header))
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == -32020 and "Mcp-Param-Region" in error["message"], error
    assert len(header_app.calls) == served  # the app was never contacted
    await asyncio.sleep(0.3)
    assert platform.logs(request_type="mcp") == [] and _budget(platform, end_user_id) == []


async def test_the_proxy_bills_a_matching_header_once(platform: Platform, header_app: McpApp) -> None:
    end_user_id, key = platform.end_user(budget_usd="1")
    await _listed(platform, key)
    answer = await post(platform, key, _locate("us-west1"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["content"][0]["text"] == "q in us-west1"
    encoded = "=?base64?" + base64.b64encode(REGION.encode()).decode() + "?="
    answer = await post(platform, key, _locate(encoded, REGION))  # the encoded form decodes to the body's value
    assert answer.status_code == 200, answer.text
    assert header_app.regions == ["us-west1", encoded]
    await rows(platform, end_user_id, 2)
    assert _billed(platform, end_user_id) == [("success", "locate", Decimal(PRICE))] * 2
    assert _budget(platform, end_user_id) == [Decimal("-0.0023")] * 2


async def test_the_mcp_sdk_client_sends_the_header_itself_and_is_billed_once(
    platform: Platform, header_app: McpApp
) -> None:
    end_user_id, key = platform.end_user(budget_usd="1")
    async with mcp(platform.url("tools"), key, mode=MODERN) as client:
        await client.list_tools()
        result = await client.call_tool("locate", {"region": REGION, "query": "sun"})
    assert not result.is_error and result.content[0].text == f"sun in {REGION}"  # type: ignore[union-attr]
    await rows(platform, end_user_id, 1)
    assert _billed(platform, end_user_id) == [("success", "locate", Decimal(PRICE))]
    assert _budget(platform, end_user_id) == [Decimal("-0.0023")]


async def test_a_refused_header_less_call_is_listed_and_sent_once_more(platform: Platform, header_app: McpApp) -> None:
    """A handshake-era caller sends no header and the gateway has not listed the app: the app refuses the call
    (HeaderMismatch, not served), the gateway lists the tools and sends it again with the header; billed once."""
    end_user_id, key = platform.end_user(budget_usd="1")
    answer = await post(platform, key, tools_call("2025-11-25", "locate", {"region": "ap-south1", "query": "q"}))
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["content"][0]["text"] == "q in ap-south1"
    assert header_app.regions[-1] == "ap-south1"
    await rows(platform, end_user_id, 1)
    assert _billed(platform, end_user_id) == [("success", "locate", Decimal(PRICE))]
    assert _budget(platform, end_user_id) == [Decimal("-0.0023")]


# -- whose listing a check uses ----------------------------------------------------------------------------------------


async def _listing(tenant: Platform, key: str, marked: bool) -> None:
    """The caller lists the tools through the proxy and sees ``locate`` as the app lists it to their credential."""
    async with mcp(tenant.url("tools"), key, mode=MODERN) as client:
        listing = await client.list_tools()
    (locate,) = [t for t in listing.tools if t.name == "locate"]
    assert ("x-mcp-header" in locate.input_schema["properties"]["region"]) is marked


async def _served(tenant: Platform, key: str, app: McpApp) -> None:
    """A header-less 2026-07-28 ``locate`` call of a caller the app lists it to unmarked: served."""
    served = len(app.calls)
    answer = await post(tenant, key, _locate(None))
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["content"][0]["text"] == "q in us-west1"
    assert len(app.calls) == served + 1


async def _refused(tenant: Platform, key: str, app: McpApp) -> None:
    """A header-less 2026-07-28 ``locate`` call of a caller the app lists it to marked: -32020 from the gateway's own
    check, the app never contacted (not even to be refused and the call sent again with the header)."""
    served = len(app.calls)
    answer = await post(tenant, key, _locate(None))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == -32020
    assert len(app.calls) == served


async def test_two_platforms_on_one_server_are_each_checked_against_their_own_listing(
    gateway: GatewayServer, admin: httpx.Client, header_app: McpApp
) -> None:
    """Two platforms register the same server URL with their own credential; the app lists ``locate`` with its header
    mark to one and without it to the other. The one listed last must not decide the other's checks."""
    marked, plain = "tok-" + uuid.uuid4().hex, "tok-" + uuid.uuid4().hex
    header_app.unmarked.add(plain)
    tenants: list[Platform] = []
    for token in (marked, plain):
        tenant = make_platform(gateway, admin, mcp_free_calls_per_month=0)
        tenant.add_app(
            "tools", header_app.url, auth={"type": "header", "name": "Authorization", "value": f"Bearer {token}"}
        )
        tenants.append(tenant)
    strict, lax = tenants
    try:
        _, strict_key = strict.end_user(budget_usd="1")
        lax_id, lax_key = lax.end_user(budget_usd="1")
        await _listing(lax, lax_key, marked=False)
        await _listing(strict, strict_key, marked=True)  # the latest listing of the URL is the marked one
        await _served(lax, lax_key, header_app)
        await _refused(strict, strict_key, header_app)
        await _listing(lax, lax_key, marked=False)  # now the latest is the unmarked one
        await _refused(strict, strict_key, header_app)
        await _served(lax, lax_key, header_app)
        await rows(lax, lax_id, 2)
        assert _billed(lax, lax_id) == [("success", "locate", Decimal(PRICE))] * 2
        await asyncio.sleep(0.3)
        assert strict.logs(request_type="mcp") == []
    finally:
        for tenant in tenants:
            tenant.client.close()


async def test_an_oauth_apps_listing_serves_only_its_own_end_users_checks(
    gateway: GatewayServer, admin: httpx.Client, oauth: OAuthServer
) -> None:
    """One platform's OAuth app lists ``locate`` marked to one end user's token and unmarked to another's: each end
    user's calls are checked against their own listing, whichever was listed last."""
    app = McpApp(token_check=oauth.is_valid, param_headers=True).start()
    tenant = make_platform(gateway, admin, mcp_free_calls_per_month=0)
    try:
        _add_oauth_app(tenant, oauth, app)
        strict_id, strict_key = tenant.end_user(budget_usd="1")
        lax_id, lax_key = tenant.end_user(budget_usd="1")
        _connect(gateway, strict_key, "tools")
        _connect(gateway, lax_key, "tools")
        await _listing(tenant, lax_key, marked=True)
        app.unmarked.add((app.authorizations[-1] or "").removeprefix("Bearer "))  # the lax end user's token
        await _listing(tenant, lax_key, marked=False)
        await _listing(tenant, strict_key, marked=True)
        await _served(tenant, lax_key, app)
        await _refused(tenant, strict_key, app)
        await _listing(tenant, lax_key, marked=False)
        await _refused(tenant, strict_key, app)
        await _served(tenant, lax_key, app)
        await rows(tenant, lax_id, 2)
        assert _billed(tenant, lax_id) == [("success", "locate", Decimal(PRICE))] * 2
        assert tenant.logs(request_type="mcp", end_user_id=strict_id) == []
    finally:
        tenant.client.close()
        app.stop()


def _add_oauth_app(tenant: Platform, oauth: OAuthServer, app: McpApp) -> None:
    tenant.add_app("tools", app.url, auth=oauth.app_auth(["tools.read"]))
