"""The OpenAI Agents SDK: an agent with a function tool runs to completion through /v1/responses (a provider's own
Responses API, and Responses over chat) and through /v1/chat/completions; every model turn is billed once. Its
``HostedMCPTool`` works against Tollway: the gateway runs the MCP loop (approvals answered by the SDK's callback)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from agents import (
    Agent,
    HostedMCPTool,
    MCPToolApprovalFunctionResult,
    MCPToolApprovalRequest,
    Model,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.mcp import MCPServerStreamableHttp
from openai import AsyncOpenAI

from tests.clients.conftest import Account
from tests.support.mcp_app import McpApp
from tests.support.seed import Tenant, create_model


@pytest.fixture(autouse=True)
def no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)  # traces would be exported to OpenAI, which this machine cannot reach
    yield
    set_tracing_disabled(False)


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def _model(endpoint: str, slug: str, client: AsyncOpenAI) -> Model:
    if endpoint == "responses":
        return OpenAIResponsesModel(model=slug, openai_client=client)
    return OpenAIChatCompletionsModel(model=slug, openai_client=client)


@pytest.mark.parametrize(
    ("endpoint", "slug", "request_type"),
    [
        ("responses", "agent-native", "response"),  # kind openai: its own Responses API
        ("responses", "agent", "response"),  # openai_compatible: Responses over chat
        ("chat", "agent", "chat.completion"),
    ],
)
async def test_an_agent_with_a_function_tool_runs_to_completion(
    account: Account, endpoint: str, slug: str, request_type: str
) -> None:
    client = AsyncOpenAI(base_url=account.base_url, api_key=account.key, max_retries=0)
    agent = Agent(
        name="Weather",
        instructions="Answer with the weather tool.",
        tools=[get_weather],
        model=_model(endpoint, slug, client),
    )
    try:
        result = await Runner.run(agent, "What is the weather in Paris?")
    finally:
        await client.close()
    assert result.final_output == "The tool returned: Sunny in Paris"
    usage = result.context_wrapper.usage
    assert usage.requests == 2
    rows = account.rows(2)
    assert {r["request_type"] for r in rows} == {request_type}
    assert sum(r["prompt_tokens"] for r in rows) == usage.input_tokens
    assert sum(r["completion_tokens"] for r in rows) == usage.output_tokens
    account.assert_billed(rows)


# -- the hosted MCP tool (SPEC §16.3): the gateway runs the loop, the SDK only declares the server -------------------

ECHO_CALL = 'name=demo__echo&args={"text":"from MCP"}'


@pytest.fixture(scope="module")
def mcp_app(admin: httpx.Client, tenant: Tenant) -> Iterator[McpApp]:
    """A real MCP server (the ``mcp`` SDK) as the platform's app ``demo``, with agent models of both native and chat
    provider kinds that call its ``echo`` tool; the free tier is off so that every call is billed."""
    server = McpApp().start()
    base = f"/v1/platforms/{tenant.platform_id}"
    app = {"slug": "demo", "name": "Demo", "server_url": server.url, "auth": {"type": "none"}}
    assert tenant.client.post(f"{base}/mcp/apps", json={**app, "price_per_call_usd": "0.001"}).status_code == 201
    patched = tenant.client.patch(base, json={"settings": {"mcp_free_calls_per_month": 0}})
    assert patched.status_code == 200, patched.text
    configs = tenant.client.get(f"{base}/llm-configs").json()["data"]
    providers = {p["id"]: p["kind"] for p in admin.get("/v1/admin/providers", params={"limit": 100}).json()["data"]}
    native = next(c["provider_id"] for c in configs if providers.get(c["provider_id"]) == "openai")
    create_model(admin, tenant.provider_id, "mcp-agent", f"fake/agent?{ECHO_CALL}")
    create_model(admin, native, "mcp-agent-native", f"fake/agent?{ECHO_CALL}")
    yield server
    server.stop()


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("slug", ["mcp-agent-native", "mcp-agent"])
@pytest.mark.parametrize("approval", ["never", "always"])
async def test_the_hosted_mcp_tool_runs_on_the_gateway(
    account: Account, mcp_app: McpApp, slug: str, approval: str, streamed: bool
) -> None:
    client = AsyncOpenAI(base_url=account.base_url, api_key=account.key, max_retries=0)
    asked: list[str] = []

    def approve(request: MCPToolApprovalRequest) -> MCPToolApprovalFunctionResult:
        asked.append(request.data.name)
        return {"approve": True}

    tool = HostedMCPTool(
        tool_config={
            "type": "mcp",
            "server_label": "demo",
            "server_url": account.base_url + "/mcp/demo",
            "require_approval": approval,
        },
        on_approval_request=approve if approval == "always" else None,
    )
    agent = Agent(
        name="Echo", instructions="Use the echo tool.", tools=[tool], model=OpenAIResponsesModel(slug, client)
    )
    try:
        if streamed:  # the SDK parses the loop's stream events (mcp_list_tools, mcp_call, approval requests)
            run = Runner.run_streamed(agent, "Echo something.")
            kinds = [event.type async for event in run.stream_events()]
            assert "raw_response_event" in kinds
            final = run.final_output
        else:
            final = (await Runner.run(agent, "Echo something.")).final_output
    finally:
        await client.close()
    assert final == "The tool returned: from MCP"
    assert asked == (["echo"] if approval == "always" else [])
    assert mcp_app.calls[-1] == "echo"
    # Two model turns either way: with approval, the first request ends at the request and the second (the SDK's
    # approval) runs the call, then the turn that answers.
    rows = account.rows(3)
    assert sorted(r["request_type"] for r in rows) == ["mcp", "response", "response"]
    account.assert_billed(rows)


# -- the SDK's own MCP client (SPEC §16.3): the agent calls the tools itself, through the proxy URL ------------------


@pytest.fixture(scope="module")
def client_side_models(admin: httpx.Client, tenant: Tenant, mcp_app: McpApp) -> None:
    """Agent models that call ``echo``: the name the SDK gives the MCP server's tool among the agent's tools."""
    configs = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/llm-configs").json()["data"]
    providers = {p["id"]: p["kind"] for p in admin.get("/v1/admin/providers", params={"limit": 100}).json()["data"]}
    native = next(c["provider_id"] for c in configs if providers.get(c["provider_id"]) == "openai")
    create_model(admin, tenant.provider_id, "mcp-client-agent", 'fake/agent?name=echo&args={"text":"via proxy"}')
    create_model(admin, native, "mcp-client-agent-native", 'fake/agent?name=echo&args={"text":"via proxy"}')


@pytest.mark.usefixtures("client_side_models")
@pytest.mark.parametrize(
    ("endpoint", "slug", "request_type"),
    [
        ("responses", "mcp-client-agent-native", "response"),
        ("responses", "mcp-client-agent", "response"),
        ("chat", "mcp-client-agent", "chat.completion"),
    ],
)
async def test_the_sdks_mcp_client_calls_the_proxy_with_the_end_users_key(
    account: Account, mcp_app: McpApp, endpoint: str, slug: str, request_type: str
) -> None:
    client = AsyncOpenAI(base_url=account.base_url, api_key=account.key, max_retries=0)
    served = len(mcp_app.calls)
    server = MCPServerStreamableHttp(
        params={"url": account.base_url + "/mcp/demo", "headers": {"Authorization": f"Bearer {account.key}"}},
        name="demo",
        cache_tools_list=True,
    )
    try:
        async with server:
            listed = {tool.name for tool in await server.list_tools()}
            assert "echo" in listed and "leak" in listed  # the app has no allowed_tools: all of them
            agent = Agent(
                name="Echo",
                instructions="Use the echo tool.",
                mcp_servers=[server],
                model=_model(endpoint, slug, client),
            )
            result = await Runner.run(agent, "Echo something.")
    finally:
        await client.close()
    assert "via proxy" in str(result.final_output)
    assert mcp_app.calls[served:] == ["echo"]  # one call, relayed by the proxy
    rows = account.rows(3)
    assert sorted(r["request_type"] for r in rows) == sorted(["mcp", request_type, request_type])
    (call,) = [r for r in rows if r["request_type"] == "mcp"]
    assert (call["mcp_app"], call["mcp_tool"], call["mcp_free"], call["status"]) == ("demo", "echo", False, "success")
    markup = Decimal(
        str(
            account.tenant.client.get(f"/v1/platforms/{account.tenant.platform_id}").json()["settings"][
                "markup_percentage"
            ]
        )
    )
    assert Decimal(str(call["cost_usd"])) == Decimal("0.001")
    assert Decimal(str(call["charged_usd"])) == Decimal("0.001") * (1 + markup / 100)
    account.assert_billed(rows)  # the budget was debited by exactly the three charges
    path = f"/v1/platforms/{account.tenant.platform_id}/wallet/transactions"
    wallet = account.tenant.client.get(path, params={"limit": 100}).json()["data"]
    assert [Decimal(str(t["amount_usd"])) for t in wallet if t["request_id"] == call["request_id"]] == [
        Decimal("-0.001")
    ]
