"""The Responses tool loop (SPEC §16.3) end to end: the gateway served by uvicorn on SQLite and PostgreSQL, real MCP
servers built with the ``mcp`` SDK (tests/support/mcp_app.py: text tools, erroring tools, slow tools), a real OAuth
2.1 authorization server for an OAuth app, the fake upstream speaking every provider's wire format with a model that
calls an MCP tool and then answers with its result, and the official ``openai`` SDK as the client.

Money is asserted exactly: every model turn is its own usage row (``iteration`` 0, 1, … under the request ids
``<id>``, ``<id>-t01``, …) and every MCP call its own ``mcp`` row (``<id>-c01``, …) with its ledger rows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.support.mcp_app import McpApp
from tests.support.oauth_server import OAuthServer
from tests.support.seed import FAKE_PROVIDER_KEY, create_model, create_provider
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

PRICE = "0.002"  # USD per MCP call; end users pay 15 % more
TURN_COST = Decimal("0.0105")  # in=5 at $100/Mtok + out=10 at $1000/Mtok
ECHO = 'fake/agent?name=tools__echo&args={"text":"hi"}&in=5&out=10'
KINDS = {  # provider kind -> the fake upstream's wire format for it
    "openai": "openai",  # its own Responses API
    "openai_compatible": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "asi1": "asi1",
}
MODELS = {
    "echo-agent": ECHO,
    "twice": 'fake/agent?name=tools__echo&args={"text":"again"}&calls=3&in=5&out=10',
    "failing": "fake/agent?name=tools__explode&in=5&out=10",
    "erroring": "fake/agent?name=tools__fail&in=5&out=10",
    "slow": 'fake/agent?name=tools__sleep&args={"s":5}&in=5&out=10',
    "mixed": "fake/agent?name=get_weather&in=5&out=10",
    "notes-agent": 'fake/agent?name=notes__echo&args={"text":"mine"}&in=5&out=10',
    "ext-agent": 'fake/agent?name=ext__echo&args={"text":"outside"}&in=5&out=10',
}


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


@pytest.fixture(scope="module")
def app() -> Iterator[McpApp]:
    server = McpApp().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oauth() -> Iterator[OAuthServer]:
    server = OAuthServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oauth_app(oauth: OAuthServer) -> Iterator[McpApp]:
    server = McpApp(token_check=oauth.is_valid).start()
    yield server
    server.stop()


@dataclass
class Tenant:
    id: str
    key: str
    client: httpx.Client
    gateway: GatewayServer

    @property
    def base(self) -> str:
        return f"/v1/platforms/{self.id}"

    def end_user(self, budget_usd: str = "5") -> tuple[str, str]:
        created = _ok(self.client.post(f"{self.base}/end-users", json={"external_id": uuid.uuid4().hex}), 201)
        body = {"max_usd": budget_usd, "period": "monthly"}
        _ok(self.client.post(f"{self.base}/end-users/{created['id']}/budget", json=body), 201)
        return created["id"], created["api_key"]["raw_key"]

    def sdk(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.url + "/v1", api_key=key, max_retries=0, timeout=60)

    def rows(self, request_id: str, expected: int) -> list[dict[str, Any]]:
        """The usage rows of one request (its turns and calls), once ``expected`` are committed."""
        deadline = time.monotonic() + 10
        while True:
            data = _ok(self.client.get(f"{self.base}/logs", params={"limit": 100}))["data"]
            found = [r for r in data if r["request_id"].split("-")[0] == request_id]
            if len(found) >= expected or time.monotonic() > deadline:
                return sorted(found, key=lambda r: r["request_id"])
            time.sleep(0.05)

    def budget_rows(self, end_user_id: str) -> list[Decimal]:
        url = f"{self.base}/end-users/{end_user_id}/budget/transactions"
        data = _ok(self.client.get(url, params={"limit": 100}))["data"]
        return sorted(Decimal(str(r["amount_usd"])) for r in data if r["type"] == "inference")


def make_tenant(
    gateway: GatewayServer, admin: httpx.Client, fake: FakeUpstreamThread, kind: str, app: McpApp, **settings: Any
) -> Tenant:
    provider = create_provider(admin, fake.dialect_base_url(KINDS[kind]), kind=kind)
    prices = {"input_price_per_mtok": "100", "output_price_per_mtok": "1000", "max_output_tokens": 200}
    for slug, upstream in MODELS.items():
        create_model(admin, provider["id"], f"{slug}-{provider['slug']}", upstream, **prices)
    body = {"name": f"Agents {uuid.uuid4().hex[:6]}", "settings": {"markup_percentage": 15, **settings}}
    created = _ok(admin.post("/v1/admin/platforms", json=body), 201)
    platform_id, key = created["platform"]["id"], created["api_key"]["raw_key"]
    client = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    config = {"provider_id": provider["id"], "api_key": FAKE_PROVIDER_KEY}
    _ok(client.post(f"/v1/platforms/{platform_id}/llm-configs", json=config), 201)
    _ok(admin.post(f"/v1/admin/platforms/{platform_id}/wallet/topup", json={"amount_usd": "10"}))
    tools = {"slug": "tools", "name": "Tools", "server_url": app.url, "auth": {"type": "none"}, "price_per_call_usd": PRICE}
    _ok(client.post(f"/v1/platforms/{platform_id}/mcp/apps", json=tools), 201)
    tenant = Tenant(platform_id, key, client, gateway)
    tenant.provider_slug = provider["slug"]  # type: ignore[attr-defined]
    return tenant


def model(tenant: Tenant, slug: str) -> str:
    return f"{slug}-{tenant.provider_slug}"  # type: ignore[attr-defined]


@pytest.fixture(scope="module", params=list(KINDS))
def tenant(
    request: pytest.FixtureRequest,
    gateway: GatewayServer,
    admin: httpx.Client,
    fake_upstream: FakeUpstreamThread,
    app: McpApp,
) -> Iterator[Tenant]:
    made = make_tenant(gateway, admin, fake_upstream, request.param, app, mcp_free_calls_per_month=0)
    yield made
    made.client.close()


def mcp_tool(tenant: Tenant, **extra: Any) -> dict[str, Any]:
    return {
        "type": "mcp",
        "server_label": "tools",
        "server_url": f"{tenant.gateway.url}/v1/mcp/tools",
        "require_approval": "never",
        **extra,
    }


def types_of(body: Any) -> list[str]:
    return [item.type if hasattr(item, "type") else item["type"] for item in body]


# -- the loop over every provider kind ------------------------------------------------------------------------------


def test_an_agent_answers_with_an_mcp_tool_billed_per_turn_and_per_call(tenant: Tenant) -> None:
    end_user_id, key = tenant.end_user()
    with tenant.sdk(key) as sdk:
        raw = sdk.responses.with_raw_response.create(
            model=model(tenant, "echo-agent"), input="Say hi through the tool.", tools=[mcp_tool(tenant)]
        )
    response = raw.parse()
    request_id = raw.headers["x-request-id"]
    assert response.status == "completed"
    assert types_of(response.output) == ["mcp_list_tools", "mcp_call", "message"]
    listing, called, message = response.output
    assert listing.server_label == "tools" and "echo" in [t.name for t in listing.tools]
    assert (called.server_label, called.name, called.output, called.error) == ("tools", "echo", "hi", None)
    assert called.status == "completed"
    assert response.output_text == "The tool returned: hi"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (10, 20)
    rows = tenant.rows(request_id, 3)
    turns = [r for r in rows if r["request_type"] == "response"]
    (call,) = [r for r in rows if r["request_type"] == "mcp"]
    assert [(r["request_id"], r["iteration"]) for r in turns] == [(request_id, 0), (f"{request_id}-t01", 1)]
    assert {r["response_id"] for r in rows} == {response.id}
    for row in turns:
        assert (row["prompt_tokens"], row["completion_tokens"]) == (5, 10)
        assert Decimal(str(row["cost_usd"])) == TURN_COST
        assert Decimal(str(row["charged_usd"])) == TURN_COST * Decimal("1.15")
    assert (call["request_id"], call["iteration"], call["mcp_app"], call["mcp_tool"]) == (
        f"{request_id}-c01", 0, "tools", "echo",
    )  # fmt: skip
    assert call["mcp_free"] is False and Decimal(str(call["charged_usd"])) == Decimal("0.0023")
    charged = 2 * TURN_COST * Decimal("1.15") + Decimal("0.0023")
    assert Decimal(str(response.usage.model_extra["cost"])) == charged
    assert tenant.budget_rows(end_user_id) == sorted([-TURN_COST * Decimal("1.15")] * 2 + [Decimal("-0.0023")])


def test_the_stream_shows_the_loop_in_order(tenant: Tenant) -> None:
    _, key = tenant.end_user()
    with tenant.sdk(key) as sdk:
        events = list(
            sdk.responses.create(
                model=model(tenant, "echo-agent"), input="hi", tools=[mcp_tool(tenant)], stream=True
            )
        )
    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    wanted = [
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.output_text.done",
    ]
    positions = [kinds.index(kind) for kind in wanted]
    assert positions == sorted(positions)
    assert "response.mcp_call_arguments.delta" in kinds
    added = [e.item.type for e in events if e.type == "response.output_item.added"]
    done = [e.item.type for e in events if e.type == "response.output_item.done"]
    assert added == done == ["mcp_list_tools", "mcp_call", "message"]
    final = events[-1].response
    assert final.output_text == "The tool returned: hi" and final.output[1].output == "hi"


def test_max_tool_calls_ends_the_response_incomplete(tenant: Tenant, app: McpApp) -> None:
    _, key = tenant.end_user()
    with tenant.sdk(key) as sdk:
        response = sdk.responses.create(
            model=model(tenant, "twice"), input="go", tools=[mcp_tool(tenant)], max_tool_calls=2
        )
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_tool_calls"
    calls = [item for item in response.output if item.type == "mcp_call"]
    assert [c.status for c in calls] == ["completed", "completed", "incomplete"]
    assert "max_tool_calls" in str(calls[2].error)


def test_a_failing_tool_is_a_failed_call_and_the_model_goes_on(tenant: Tenant) -> None:
    _, key = tenant.end_user()
    with tenant.sdk(key) as sdk:
        raw = sdk.responses.with_raw_response.create(
            model=model(tenant, "failing"), input="go", tools=[mcp_tool(tenant)]
        )
    response = raw.parse()
    assert response.status == "completed"
    call = response.output[1]
    assert call.status == "failed" and "Unknown tool" in str(call.error) and call.output is None
    assert "Unknown tool" in response.output_text
    rows = tenant.rows(raw.headers["x-request-id"], 3)
    (mcp_row,) = [r for r in rows if r["request_type"] == "mcp"]
    assert (mcp_row["status"], mcp_row["cost_usd"], mcp_row["charged_usd"]) == ("error", 0, 0)


def test_function_tools_still_return_to_the_client(tenant: Tenant) -> None:
    _, key = tenant.end_user()
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    with tenant.sdk(key) as sdk:
        response = sdk.responses.create(
            model=model(tenant, "mixed"), input="weather?", tools=[mcp_tool(tenant), weather]
        )
    assert response.status == "completed"
    assert types_of(response.output) == ["mcp_list_tools", "function_call"]
    assert response.output[1].name == "get_weather"
