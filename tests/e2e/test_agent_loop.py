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

from tests.conftest import STORES, database_url_for, make_settings
from tests.support.invariants import checked_gateway
from tests.support.mcp_app import McpApp
from tests.support.oauth_server import OAuthServer
from tests.support.seed import FAKE_PROVIDER_KEY, create_model, create_provider
from tests.support.servers import GatewayServer, free_port
from tollway.fake_upstream.server import FakeUpstreamThread

CALL_TIMEOUT_S = 1.5
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
    "napper": 'fake/agent?name=tools__sleep&args={"s":1}&in=5&out=10&delay_ms=20',
    "ten": 'fake/agent?name=tools__echo&args={"text":"x"}&calls=10&in=5&out=10',
    "dozer": 'fake/agent?name=tools__sleep&args={"s":6}&in=5&out=10',  # a tool call longer than a short lease
    "late-agent": 'fake/agent?name=tools__echo&args={"text":"hi"}&in=5&out=10&ms=3000',  # each turn's first byte late
    "late-echo": "fake/echo?ms=3000",
    "plain": "fake/echo",
}
TIGHT = 'fake/agent?name=tools__echo&args={"text":"hi"}&in=5&out=10'  # exactly 10 output tokens, never clamped


@pytest.fixture(scope="module", params=STORES)
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp = tmp_path_factory.mktemp("agent-loop")
    settings = make_settings(tmp, database_url_for(request.param, tmp, request), mcp_call_timeout_s=CALL_TIMEOUT_S)
    with checked_gateway(settings) as server:
        yield server


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


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
    gateway: GatewayServer,
    admin: httpx.Client,
    fake: FakeUpstreamThread,
    kind: str,
    app: McpApp,
    topup: str = "10",
    **settings: Any,
) -> Tenant:
    provider = create_provider(admin, fake.dialect_base_url(KINDS[kind]), kind=kind)
    prices = {"input_price_per_mtok": "100", "output_price_per_mtok": "1000", "max_output_tokens": 200}
    for slug, upstream in MODELS.items():
        create_model(admin, provider["id"], f"{slug}-{provider['slug']}", upstream, **prices)
    tight = {"input_price_per_mtok": "0", "output_price_per_mtok": "1000", "max_output_tokens": 10}
    create_model(admin, provider["id"], f"tight-{provider['slug']}", TIGHT, min_output_tokens=10, **tight)
    body = {"name": f"Agents {uuid.uuid4().hex[:6]}", "settings": {"markup_percentage": 15, **settings}}
    created = _ok(admin.post("/v1/admin/platforms", json=body), 201)
    platform_id, key = created["platform"]["id"], created["api_key"]["raw_key"]
    client = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    config = {"provider_id": provider["id"], "api_key": FAKE_PROVIDER_KEY}
    _ok(client.post(f"/v1/platforms/{platform_id}/llm-configs", json=config), 201)
    _ok(admin.post(f"/v1/admin/platforms/{platform_id}/wallet/topup", json={"amount_usd": topup}))
    tools = {
        "slug": "tools",
        "name": "Tools",
        "server_url": app.url,
        "auth": {"type": "none"},
        "price_per_call_usd": PRICE,
    }
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
    listing, called, _message = response.output
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
            sdk.responses.create(model=model(tenant, "echo-agent"), input="hi", tools=[mcp_tool(tenant)], stream=True)
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
    # The SDK's stream helper accumulates the same response from the events.
    with (
        tenant.sdk(key) as sdk,
        sdk.responses.stream(model=model(tenant, "echo-agent"), input="hi", tools=[mcp_tool(tenant)]) as stream,
    ):
        accumulated = stream.get_final_response()
    assert types_of(accumulated.output) == ["mcp_list_tools", "mcp_call", "message"]
    assert accumulated.output_text == "The tool returned: hi"


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


# -- approvals ------------------------------------------------------------------------------------------------------


def test_an_approval_request_ends_the_response_and_approving_resumes_it(tenant: Tenant, app: McpApp) -> None:
    _end_user_id, key = tenant.end_user()
    tools = [mcp_tool(tenant, require_approval="always")]
    served = len(app.calls)
    with tenant.sdk(key) as sdk:
        first = sdk.responses.create(model=model(tenant, "echo-agent"), input="hi", tools=tools)
        assert first.status == "completed"
        assert types_of(first.output) == ["mcp_list_tools", "mcp_approval_request"]
        asked = first.output[1]
        assert (asked.server_label, asked.name, asked.arguments.replace(" ", "")) == ("tools", "echo", '{"text":"hi"}')
        assert asked.id.startswith("mcpr_") and len(app.calls) == served
        approval = {"type": "mcp_approval_response", "approval_request_id": asked.id, "approve": True}
        raw = sdk.responses.with_raw_response.create(
            model=model(tenant, "echo-agent"), input=[approval], tools=tools, previous_response_id=first.id
        )
    second = raw.parse()
    assert types_of(second.output) == ["mcp_call", "message"]  # the listing is reused along the chain
    call = second.output[0]
    assert (call.approval_request_id, call.output, call.status) == (asked.id, "hi", "completed")
    assert second.output_text == "The tool returned: hi" and app.calls[served:] == ["echo"]
    rows = tenant.rows(raw.headers["x-request-id"], 2)
    assert sorted((r["request_type"], r["iteration"]) for r in rows) == [("mcp", 0), ("response", 0)]


def test_a_denied_request_is_told_to_the_model(tenant: Tenant, app: McpApp) -> None:
    _, key = tenant.end_user()
    tools = [mcp_tool(tenant, require_approval={"never": {"tool_names": ["fail"]}})]
    served = len(app.calls)
    with tenant.sdk(key) as sdk:
        first = sdk.responses.create(model=model(tenant, "echo-agent"), input="hi", tools=tools)
        asked = first.output[-1]
        assert asked.type == "mcp_approval_request"
        denial = {"type": "mcp_approval_response", "approval_request_id": asked.id, "approve": False, "reason": "no"}
        second = sdk.responses.create(
            model=model(tenant, "echo-agent"), input=[denial], tools=tools, previous_response_id=first.id
        )
    assert types_of(second.output) == ["message"]
    assert second.output_text == "The tool returned: The user denied this tool call. Reason: no"
    assert len(app.calls) == served


def test_an_unknown_approval_request_id_is_refused(tenant: Tenant) -> None:
    _, key = tenant.end_user()
    approval = {"type": "mcp_approval_response", "approval_request_id": "mcpr_nope", "approve": True}
    with tenant.sdk(key) as sdk, pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model=model(tenant, "echo-agent"), input=[approval], tools=[mcp_tool(tenant)])
    assert caught.value.body["param"] == "input[0].approval_request_id"  # type: ignore[index]


# -- money ------------------------------------------------------------------------------------------------------------


def test_a_budget_that_cannot_cover_the_next_turn_ends_the_loop_incomplete(tenant: Tenant) -> None:
    # Each turn holds exactly 10 output tokens at $1,000/Mtok (+15 %): $0.0115; a call $0.0023. $0.02 covers turn 0
    # and the call, not turn 1.
    end_user_id, key = tenant.end_user(budget_usd="0.02")
    with tenant.sdk(key) as sdk:
        raw = sdk.responses.with_raw_response.create(model=model(tenant, "tight"), input="hi", tools=[mcp_tool(tenant)])
    response = raw.parse()
    assert response.status == "incomplete" and response.incomplete_details.reason == "budget_exhausted"
    assert types_of(response.output) == ["mcp_list_tools", "mcp_call"] and response.output[1].output == "hi"
    assert Decimal(str(response.usage.model_extra["cost"])) == Decimal("0.0138")
    assert tenant.budget_rows(end_user_id) == [Decimal("-0.0115"), Decimal("-0.0023")]
    rows = tenant.rows(raw.headers["x-request-id"], 2)
    assert sorted((r["request_type"], r["iteration"]) for r in rows) == [("mcp", 0), ("response", 0)]


def test_a_budget_that_cannot_cover_the_first_turn_is_the_usual_402(tenant: Tenant) -> None:
    _, key = tenant.end_user(budget_usd="0.01")
    with tenant.sdk(key) as sdk, pytest.raises(openai.APIStatusError) as caught:
        sdk.responses.create(model=model(tenant, "tight"), input="hi", tools=[mcp_tool(tenant)])
    assert caught.value.status_code == 402 and caught.value.body["code"] == "budget_exhausted"  # type: ignore[index]


# -- one provider kind: servers, limits, chains -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compat(
    gateway: GatewayServer, admin: httpx.Client, fake_upstream: FakeUpstreamThread, app: McpApp
) -> Iterator[Tenant]:
    made = make_tenant(gateway, admin, fake_upstream, "openai_compatible", app, mcp_free_calls_per_month=1)
    yield made
    made.client.close()


def test_the_free_tier_pays_the_first_call_of_the_month(compat: Tenant) -> None:
    _, key = compat.end_user()
    request_ids = []
    with compat.sdk(key) as sdk:
        for _ in range(2):
            raw = sdk.responses.with_raw_response.create(
                model=model(compat, "echo-agent"), input="hi", tools=[mcp_tool(compat)]
            )
            request_ids.append(raw.headers["x-request-id"])
    free, billed = (next(r for r in compat.rows(rid, 3) if r["request_type"] == "mcp") for rid in request_ids)
    assert (free["mcp_free"], free["cost_usd"]) == (True, 0)
    assert (billed["mcp_free"], Decimal(str(billed["cost_usd"]))) == (False, Decimal(PRICE))


def test_a_slow_tool_fails_on_the_time_limit_and_the_model_answers(compat: Tenant) -> None:
    _, key = compat.end_user()
    with compat.sdk(key) as sdk:
        response = sdk.responses.create(model=model(compat, "slow"), input="hi", tools=[mcp_tool(compat)])
    call = response.output[1]
    assert call.status == "failed" and "1.5 s" in str(call.error)
    assert response.status == "completed" and "1.5 s" in response.output_text


def test_an_is_error_result_is_a_failed_call_that_is_billed(tenant: Tenant) -> None:
    _, key = tenant.end_user()
    with tenant.sdk(key) as sdk:
        raw = sdk.responses.with_raw_response.create(
            model=model(tenant, "erroring"), input="hi", tools=[mcp_tool(tenant)]
        )
    response = raw.parse()
    call = response.output[1]
    assert (call.status, call.error, call.output) == ("failed", "the tool failed", None)
    assert response.output_text == "The tool returned: Error: the tool failed"
    (row,) = [r for r in tenant.rows(raw.headers["x-request-id"], 3) if r["request_type"] == "mcp"]
    assert (row["status"], Decimal(str(row["cost_usd"])), row["mcp_free"]) == ("success", Decimal(PRICE), False)


def test_previous_response_id_and_threads_reuse_the_listing(compat: Tenant) -> None:
    _, key = compat.end_user()
    tools = [mcp_tool(compat)]
    thread = f"t-{uuid.uuid4().hex[:10]}"
    with compat.sdk(key) as sdk:
        first = sdk.responses.create(model=model(compat, "echo-agent"), input="one", tools=tools)
        again = sdk.responses.create(
            model=model(compat, "echo-agent"), input="two", tools=tools, previous_response_id=first.id
        )
        on_thread = [
            sdk.responses.create(
                model=model(compat, "echo-agent"), input=text, tools=tools, extra_body={"thread_id": thread}
            )
            for text in ("one", "two")
        ]
    assert types_of(first.output)[0] == "mcp_list_tools" and "mcp_list_tools" not in types_of(again.output)
    assert types_of(again.output) == ["mcp_call", "message"]
    assert types_of(on_thread[0].output)[0] == "mcp_list_tools"
    assert types_of(on_thread[1].output) == ["mcp_call", "message"]
    stored = _ok(compat.client.get(f"/v1/threads/{thread}/items", headers={"Authorization": f"Bearer {key}"}))
    assert "mcp_list_tools" in [item["type"] for item in stored["data"]]


def test_an_app_the_end_user_has_not_connected_is_409(compat: Tenant, oauth: OAuthServer, oauth_app: McpApp) -> None:
    auth = oauth.app_auth(["notes.read"])
    body = {"slug": "notes", "name": "Notes", "server_url": oauth_app.url, "auth": auth, "price_per_call_usd": PRICE}
    _ok(compat.client.post(f"{compat.base}/mcp/apps", json=body), 201)
    _, key = compat.end_user()
    tool = mcp_tool(compat, server_label="notes", server_url=f"{compat.gateway.url}/v1/mcp/notes")
    with compat.sdk(key) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.responses.create(model=model(compat, "notes-agent"), input="hi", tools=[tool])
        assert caught.value.status_code == 409
        assert caught.value.body["code"] == "mcp_app_not_connected"  # type: ignore[index]
        with httpx.Client(base_url=compat.gateway.url, headers={"Authorization": f"Bearer {key}"}) as me:
            started = _ok(me.post("/v1/me/mcp/apps/notes/connect"))
        callback = httpx.get(started["authorize_url"], follow_redirects=False).headers["location"]
        assert httpx.get(callback, follow_redirects=False).status_code == 200
        response = sdk.responses.create(model=model(compat, "notes-agent"), input="hi", tools=[tool])
    assert response.output[1].output == "mine"
    token = (oauth_app.authorizations[-1] or "").removeprefix("Bearer ")
    assert oauth.is_valid(token)


def test_external_servers_need_the_platform_setting_and_their_headers_are_never_stored(
    gateway: GatewayServer, admin: httpx.Client, fake_upstream: FakeUpstreamThread, app: McpApp, compat: Tenant
) -> None:
    secret = "ext-secret-" + uuid.uuid4().hex
    outside = McpApp(token_check=lambda token: token == secret).start()
    try:
        tool = mcp_tool(
            compat, server_label="ext", server_url=outside.url, headers={"Authorization": f"Bearer {secret}"}
        )
        _, key = compat.end_user()
        with compat.sdk(key) as sdk, pytest.raises(openai.BadRequestError) as caught:
            sdk.responses.create(model=model(compat, "ext-agent"), input="hi", tools=[tool])
        assert caught.value.body["param"] == "tools[0].server_url"  # type: ignore[index]
        assert "mcp_external_servers" in caught.value.message
        allowed = make_tenant(gateway, admin, fake_upstream, "openai_compatible", app, mcp_external_servers=True)
        _, key = allowed.end_user()
        with allowed.sdk(key) as sdk:
            raw = sdk.responses.with_raw_response.create(model=model(allowed, "ext-agent"), input="hi", tools=[tool])
            response = raw.parse()
            assert response.output[1].output == "outside" and outside.authorizations[-1] == f"Bearer {secret}"
            assert "headers" not in response.tools[0].model_dump(exclude_none=True)
            stored = sdk.responses.retrieve(response.id)
        assert secret not in stored.model_dump_json()
        rows = allowed.rows(raw.headers["x-request-id"], 3)
        (call,) = [r for r in rows if r["request_type"] == "mcp"]
        assert (call["mcp_app"], call["cost_usd"], call["status"]) == ("ext", 0, "success")
        assert secret not in str(rows)
        allowed.client.close()
    finally:
        outside.stop()


def test_chat_completions_refuse_mcp_tools(compat: Tenant) -> None:
    with compat.sdk(compat.key) as sdk, pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model=model(compat, "echo-agent"),
            messages=[{"role": "user", "content": "hi"}],
            tools=[mcp_tool(compat)],  # type: ignore[list-item]
        )
    body = caught.value.body
    assert body["code"] == "unsupported_parameter" and body["param"] == "tools[0].type"  # type: ignore[index]
    assert "/v1/responses" in body["message"]  # type: ignore[index]


def test_a_client_leaving_the_stream_stops_the_loop_after_the_running_call(compat: Tenant, app: McpApp) -> None:
    _, key = compat.end_user()
    with compat.sdk(key) as sdk:
        raw = sdk.responses.with_streaming_response.create(
            model=model(compat, "napper"), input="hi", tools=[mcp_tool(compat)], stream=True
        )
        with raw as response:
            request_id = response.headers["x-request-id"]
            for line in response.iter_lines():
                if "response.mcp_call.in_progress" in line:
                    break
    rows = compat.rows(request_id, 2)
    time.sleep(1.5)  # long enough for a next turn to have started, were the loop still running
    rows = compat.rows(request_id, 2)
    assert sorted((r["request_type"], r["status"]) for r in rows) == [("mcp", "success"), ("response", "success")]


def test_usage_logs_show_the_turns_and_calls_of_a_response(compat: Tenant) -> None:
    _, key = compat.end_user()
    with compat.sdk(key) as sdk:
        raw = sdk.responses.with_raw_response.create(
            model=model(compat, "echo-agent"), input="hi", tools=[mcp_tool(compat)]
        )
    response = raw.parse()
    compat.rows(raw.headers["x-request-id"], 3)
    with httpx.Client(base_url=compat.gateway.url, headers={"Authorization": f"Bearer {key}"}) as me:
        mine = _ok(me.get("/v1/me/usage", params={"response_id": response.id}))["data"]
    shown = sorted((r["request_type"], r["iteration"], r["mcp_app"], r["mcp_tool"], r["mcp_free"]) for r in mine)
    assert shown == [
        ("mcp", 0, "tools", "echo", False),
        ("response", 0, None, None, None),
        ("response", 1, None, None, None),
    ]
    assert {r["response_id"] for r in mine} == {response.id} and all("cost_usd" not in r for r in mine)
    logs = _ok(compat.client.get(f"{compat.base}/logs", params={"response_id": response.id, "mcp_app": "tools"}))
    assert [(r["request_type"], r["request_id"]) for r in logs["data"]] == [
        ("mcp", f"{raw.headers['x-request-id']}-c01")
    ]


def test_ten_calls_of_one_loop_with_a_free_tier_of_three_are_three_free_and_seven_billed(
    gateway: GatewayServer, admin: httpx.Client, fake_upstream: FakeUpstreamThread, app: McpApp
) -> None:
    tenant = make_tenant(gateway, admin, fake_upstream, "openai_compatible", app, mcp_free_calls_per_month=3)
    _ok(tenant.client.patch(f"{tenant.base}/mcp/apps/{_app_id(tenant, 'tools')}", json={"price_per_call_usd": "0.01"}))
    end_user_id, key = tenant.end_user()
    with tenant.sdk(key) as sdk:
        raw = sdk.responses.with_raw_response.create(model=model(tenant, "ten"), input="go", tools=[mcp_tool(tenant)])
    response = raw.parse()
    assert response.status == "completed" and [i.type for i in response.output].count("mcp_call") == 10
    rows = tenant.rows(raw.headers["x-request-id"], 21)  # 11 turns, 10 calls
    calls = [r for r in rows if r["request_type"] == "mcp"]
    assert [r["request_id"][-3:] for r in calls] == [f"c{n:02d}" for n in range(1, 10)] + ["c0a"]
    assert sorted(r["mcp_free"] for r in calls) == [False] * 7 + [True] * 3
    assert [r["iteration"] for r in rows if r["request_type"] == "response"] == list(range(11))
    turns = 11 * TURN_COST * Decimal("1.15")
    assert sum(Decimal(str(r["charged_usd"])) for r in rows) == turns + 7 * Decimal("0.0115")
    assert sum(tenant.budget_rows(end_user_id)) == -(turns + 7 * Decimal("0.0115"))
    assert Decimal(str(response.usage.model_extra["cost"])) == turns + 7 * Decimal("0.0115")
    tenant.client.close()


def _app_id(tenant: Tenant, slug: str) -> str:
    apps = _ok(tenant.client.get(f"{tenant.base}/mcp/apps"))["data"]
    return str(next(a["id"] for a in apps if a["slug"] == slug))


def test_another_tenants_app_is_never_usable(
    gateway: GatewayServer, admin: httpx.Client, fake_upstream: FakeUpstreamThread, app: McpApp, compat: Tenant
) -> None:
    other = make_tenant(gateway, admin, fake_upstream, "openai_compatible", McpApp())  # its own app, never started
    _ok(other.client.delete(f"{other.base}/mcp/apps/{_app_id(other, 'tools')}"), 204)
    _, key = other.end_user()
    with other.sdk(key) as sdk:
        for url in (app.url, f"{gateway.url}/v1/mcp/tools"):  # compat's app: its server, and the proxy URL
            tool = mcp_tool(other, server_url=url)
            with pytest.raises(openai.BadRequestError) as caught:
                sdk.responses.create(model=model(other, "echo-agent"), input="hi", tools=[tool])
            assert caught.value.body["param"] == "tools[0].server_url"  # type: ignore[index]
    other.client.close()


def test_a_wallet_that_cannot_cover_the_next_turn_ends_the_loop_incomplete(
    gateway: GatewayServer, admin: httpx.Client, fake_upstream: FakeUpstreamThread, app: McpApp
) -> None:
    # A platform key pays raw costs from the wallet: a turn holds $0.01, a call $0.002; $0.015 covers turn 0 and the
    # call, not turn 1.
    tenant = make_tenant(gateway, admin, fake_upstream, "anthropic", app, topup="0.015", mcp_free_calls_per_month=0)
    with tenant.sdk(tenant.key) as sdk:
        response = sdk.responses.create(model=model(tenant, "tight"), input="hi", tools=[mcp_tool(tenant)])
    assert response.status == "incomplete" and response.incomplete_details.reason == "wallet_insufficient"
    assert types_of(response.output) == ["mcp_list_tools", "mcp_call"]
    assert Decimal(str(response.usage.model_extra["cost"])) == Decimal("0.012")
    wallet = _ok(tenant.client.get(f"{tenant.base}/wallet"))
    assert Decimal(str(wallet["balance_usd"])) == Decimal("0.003") and wallet["held_usd"] == 0
    tenant.client.close()


def test_a_refusal_after_something_was_billed_fails_the_response_with_its_output(compat: Tenant) -> None:
    # One request a minute: turn 0 is admitted, the MCP call and turn 1 are refused by the rate limit. The call is a
    # failed mcp_call (the loop goes on); turn 1's refusal ends the response failed, with what was done, unstored.
    end_user_id, key = compat.end_user()
    limits = {"rpm_limit": 1, "tpm_limit": None, "rpd_limit": None}
    _ok(compat.client.put(f"{compat.base}/end-users/{end_user_id}/rate-limits", json=limits))
    time.sleep(1.1)  # effective within 1 s on every instance
    with compat.sdk(key) as sdk:
        raw = sdk.responses.with_raw_response.create(
            model=model(compat, "echo-agent"), input="hi", tools=[mcp_tool(compat)]
        )
        response = raw.parse()
        assert response.status == "failed" and response.error.code == "rate_limit_exceeded"
        assert types_of(response.output) == ["mcp_list_tools", "mcp_call"]
        assert response.output[1].status == "failed" and "rate limit" in str(response.output[1].error).lower()
        with pytest.raises(openai.NotFoundError):
            sdk.responses.retrieve(response.id)
    rows = compat.rows(raw.headers["x-request-id"], 1)
    assert [(r["request_type"], r["iteration"]) for r in rows] == [("response", 0)]


# -- tool_choice {"type": "mcp"} --------------------------------------------------------------------------------------


def _forced(body: dict[str, Any]) -> str | None:
    """The function an upstream request forces (``"required"``: any of its tools), None when the model chooses; in
    every wire format (OpenAI chat and Responses, Anthropic, Gemini)."""
    config = body.get("toolConfig")
    if config is not None:
        calling = config["functionCallingConfig"]
        names = calling.get("allowedFunctionNames")
        return None if calling["mode"] != "ANY" else names[0] if names else "required"
    choice = body.get("tool_choice")
    if choice is None or choice == "auto" or (isinstance(choice, dict) and choice["type"] == "auto"):
        return None
    if choice == "required" or choice["type"] == "any":
        return "required"
    return str(choice.get("name") or choice["function"]["name"])


def _offered(body: dict[str, Any]) -> list[str]:
    """The names of the tools an upstream request offers, in every wire format."""
    tools = body.get("tools") or []
    if tools and "functionDeclarations" in tools[0]:
        return [t["name"] for t in tools[0]["functionDeclarations"]]
    return [t["function"]["name"] if "function" in t else t["name"] for t in tools]


def _sent(fake: FakeUpstreamThread, mark: str) -> list[dict[str, Any]]:
    """The upstream requests (the model turns) of the response whose input holds ``mark``, in order."""
    return [r.body for r in fake.requests if isinstance(r.body, dict) and mark in str(r.body)]


def test_tool_choice_mcp_forces_the_named_tool_on_the_first_turn_only(
    tenant: Tenant, fake_upstream: FakeUpstreamThread
) -> None:
    _, key = tenant.end_user()
    mark = uuid.uuid4().hex
    choice = {"type": "mcp", "server_label": "tools", "name": "echo"}
    with tenant.sdk(key) as sdk:
        response = sdk.responses.create(
            model=model(tenant, "echo-agent"), input=f"hi {mark}", tools=[mcp_tool(tenant)], tool_choice=choice
        )
    assert response.status == "completed" and response.output_text == "The tool returned: hi"
    assert types_of(response.output) == ["mcp_list_tools", "mcp_call", "message"]
    assert response.tool_choice.model_dump(exclude_none=True) == choice  # echoed as sent (the SDK's ToolChoiceMcp)
    turns = _sent(fake_upstream, mark)
    assert [_forced(body) for body in turns] == ["tools__echo", None]  # then the model chooses again, as OpenAI does
    assert "tools__sleep" in _offered(turns[0])  # a named tool is forced by name: every tool is still offered


def test_tool_choice_mcp_without_a_name_requires_one_of_the_servers_tools(
    tenant: Tenant, fake_upstream: FakeUpstreamThread
) -> None:
    _, key = tenant.end_user()
    mark = uuid.uuid4().hex
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    tools = [mcp_tool(tenant, allowed_tools=["echo", "fail"]), weather]
    with tenant.sdk(key) as sdk:
        response = sdk.responses.create(
            model=model(tenant, "echo-agent"),
            input=f"hi {mark}",
            tools=tools,  # type: ignore[arg-type]
            tool_choice={"type": "mcp", "server_label": "tools"},
        )
    assert response.status == "completed" and response.output[1].output == "hi"
    first, second = _sent(fake_upstream, mark)
    assert (_forced(first), sorted(_offered(first))) == ("required", ["tools__echo", "tools__fail"])
    assert (_forced(second), sorted(_offered(second))) == (None, ["get_weather", "tools__echo", "tools__fail"])


def test_tool_choice_mcp_must_name_a_server_and_a_tool_it_offers(
    compat: Tenant, fake_upstream: FakeUpstreamThread, app: McpApp
) -> None:
    _, key = compat.end_user()
    mark = uuid.uuid4().hex
    served = len(app.calls)
    cases = [
        ({"type": "mcp", "server_label": "elsewhere"}, [mcp_tool(compat)], "tool_choice.server_label"),
        ({"type": "mcp", "server_label": "tools", "name": "nope"}, [mcp_tool(compat)], "tool_choice.name"),
        ({"type": "mcp", "server_label": "tools", "name": "fail"}, [mcp_tool(compat, allowed_tools=["echo"])],
         "tool_choice.name"),
        ({"type": "mcp", "server_label": "tools", "name": 7}, [mcp_tool(compat)], "tool_choice.name"),
        ({"type": "mcp", "server_label": "tools", "extra": 1}, [mcp_tool(compat)], "tool_choice.extra"),
    ]  # fmt: skip
    with compat.sdk(key) as sdk:
        for choice, tools, param in cases:
            for stream in (False, True):
                with pytest.raises(openai.BadRequestError) as caught:
                    sdk.responses.create(
                        model=model(compat, "echo-agent"),
                        input=f"hi {mark}",
                        tools=tools,
                        tool_choice=choice,  # type: ignore[arg-type]
                        stream=stream,
                    )
                assert caught.value.body["param"] == param, caught.value.body  # type: ignore[index]
    assert _sent(fake_upstream, mark) == [] and len(app.calls) == served  # no model turn, no tool call


def test_tool_choice_mcp_is_not_forced_again_when_the_request_answers_its_approval(
    compat: Tenant, fake_upstream: FakeUpstreamThread, app: McpApp
) -> None:
    # The Agents SDK's HostedMCPTool sends the same tool_choice with the approval: the approved call satisfies it, so
    # the model answers instead of asking for the same call again.
    _, key = compat.end_user()
    mark = uuid.uuid4().hex
    tools = [mcp_tool(compat, require_approval="always")]
    choice = {"type": "mcp", "server_label": "tools", "name": "echo"}
    with compat.sdk(key) as sdk:
        first = sdk.responses.create(
            model=model(compat, "echo-agent"), input=f"hi {mark}", tools=tools, tool_choice=choice
        )
        assert types_of(first.output) == ["mcp_list_tools", "mcp_approval_request"]
        approval = {"type": "mcp_approval_response", "approval_request_id": first.output[1].id, "approve": True}
        second = sdk.responses.create(
            model=model(compat, "echo-agent"),
            input=[approval],
            tools=tools,
            tool_choice=choice,
            previous_response_id=first.id,
        )
    assert types_of(second.output) == ["mcp_call", "message"] and second.output_text == "The tool returned: hi"
    assert [_forced(body) for body in _sent(fake_upstream, mark)] == ["tools__echo", None]


# -- a forcing tool_choice binds the first turn only -------------------------------------------------------------------


def _mode(body: dict[str, Any]) -> str | None:
    """The tool_choice an upstream request carries, in every wire format: the forced function's name, "required",
    "auto", "none", or None when it carries none."""
    forced = _forced(body)
    if forced is not None:
        return forced
    config = body.get("toolConfig")
    choice = config["functionCallingConfig"]["mode"].lower() if config is not None else body.get("tool_choice")
    return str(choice["type"]) if isinstance(choice, dict) else choice


WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
FORCING = [  # (tool_choice, whether a function tool is declared too, what the first upstream request forces)
    ("required", False, "required"),
    ({"type": "function", "name": "get_weather"}, True, "get_weather"),
    ({"type": "mcp", "server_label": "tools", "name": "echo"}, False, "tools__echo"),
]


@pytest.mark.parametrize(("choice", "weather", "first"), FORCING, ids=["required", "function", "mcp"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_forcing_tool_choice_binds_the_first_turn_of_the_loop_only(
    tenant: Tenant,
    fake_upstream: FakeUpstreamThread,
    choice: Any,
    weather: bool,
    first: str,
    stream: bool,
) -> None:
    # OpenAI applies tool_choice to the model's first choice; forcing every turn would make the model call a tool
    # until max_tool_calls. The fake model calls the MCP tool once (even when told to call get_weather), then answers.
    _, key = tenant.end_user()
    mark = uuid.uuid4().hex
    tools = [mcp_tool(tenant)] + ([WEATHER] if weather else [])
    with tenant.sdk(key) as sdk:
        body: dict[str, Any] = {"model": model(tenant, "echo-agent"), "input": f"hi {mark}", "tools": tools}
        if stream:
            events = list(sdk.responses.create(**body, tool_choice=choice, stream=True))
            assert events[-1].type == "response.completed"
            response = events[-1].response
        else:
            response = sdk.responses.create(**body, tool_choice=choice)
    assert response.status == "completed" and response.output_text == "The tool returned: hi"
    assert types_of(response.output) == ["mcp_list_tools", "mcp_call", "message"]
    assert response.output[1].status == "completed" and response.output[1].output == "hi"
    assert response.incomplete_details is None
    assert [_mode(sent) for sent in _sent(fake_upstream, mark)] == [first, "auto"]


def test_tool_choice_required_is_not_forced_again_when_the_request_answers_its_approval(
    compat: Tenant, fake_upstream: FakeUpstreamThread
) -> None:
    # The forced turn asked for the approval: the approved call satisfies "required", so the model answers instead of
    # asking for another call (and another approval) on every request of the chain.
    _, key = compat.end_user()
    mark = uuid.uuid4().hex
    tools = [mcp_tool(compat, require_approval="always")]
    with compat.sdk(key) as sdk:
        first = sdk.responses.create(
            model=model(compat, "echo-agent"), input=f"hi {mark}", tools=tools, tool_choice="required"
        )
        assert types_of(first.output) == ["mcp_list_tools", "mcp_approval_request"]
        approval = {"type": "mcp_approval_response", "approval_request_id": first.output[1].id, "approve": True}
        second = sdk.responses.create(
            model=model(compat, "echo-agent"),
            input=[approval],
            tools=tools,
            tool_choice="required",
            previous_response_id=first.id,
        )
    assert types_of(second.output) == ["mcp_call", "message"] and second.output_text == "The tool returned: hi"
    assert [_mode(body) for body in _sent(fake_upstream, mark)] == ["required", "auto"]


@pytest.mark.parametrize(
    ("allowed", "param"),
    [
        (["echo", "fail", "echo"], "tools[0].allowed_tools[2]"),
        ({"tool_names": ["echo", "echo"]}, "tools[0].allowed_tools.tool_names[1]"),
    ],
    ids=["list", "tool_names"],
)
def test_a_repeated_allowed_tool_is_a_400_naming_the_repeat(
    compat: Tenant, fake_upstream: FakeUpstreamThread, app: McpApp, allowed: Any, param: str
) -> None:
    end_user_id, key = compat.end_user()
    mark = uuid.uuid4().hex
    served = len(app.calls)
    with compat.sdk(key) as sdk:
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as caught:
                sdk.responses.create(
                    model=model(compat, "echo-agent"),
                    input=f"hi {mark}",
                    tools=[mcp_tool(compat, allowed_tools=allowed)],
                    stream=stream,
                )
            error = caught.value.body
            assert (error["code"], error["param"]) == ("invalid_request", param), error  # type: ignore[index]
            assert "repeats 'echo'" in error["message"]  # type: ignore[index]
    assert _sent(fake_upstream, mark) == [] and len(app.calls) == served  # no model turn, no tool call
    assert compat.budget_rows(end_user_id) == []


# -- tool_choice "required" when the MCP servers offer no tool -----------------------------------------------------


def _app_on(tenant: Tenant, server_url: str, **extra: Any) -> str:
    """One more app of the tenant's platform (a fresh slug): its proxy URL, which an ``mcp`` tool names."""
    slug = f"app-{uuid.uuid4().hex[:8]}"
    body = {"slug": slug, "name": slug, "server_url": server_url, "auth": {"type": "none"}, **extra}
    _ok(tenant.client.post(f"{tenant.base}/mcp/apps", json=body), 201)
    return f"{tenant.gateway.url}/v1/mcp/{slug}"


def test_tool_choice_required_with_an_mcp_server_that_cannot_be_listed_is_the_listings_error(
    compat: Tenant, fake_upstream: FakeUpstreamThread
) -> None:
    """The request's only tools are on a server that cannot be listed: "required" has nothing to require. The answer
    is the listing's failure (502, its error as the ``mcp_list_tools`` item reports it without tool_choice), as for a
    forced ``{"type": "mcp"}`` tool, not the provider translation's complaint that no tools were declared."""
    _, key = compat.end_user()
    down = mcp_tool(compat, server_label="down", server_url=_app_on(compat, f"http://127.0.0.1:{free_port()}/mcp"))
    with compat.sdk(key) as sdk:
        listed = sdk.responses.create(model=model(compat, "plain"), input="hi", tools=[down])  # type: ignore[list-item]
        (item,) = [i for i in listed.output if i.type == "mcp_list_tools"]
        listing_error = item.error  # type: ignore[union-attr]
        assert listing_error, item
        mark = uuid.uuid4().hex
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as caught:
                sdk.responses.create(
                    model=model(compat, "plain"),
                    input=f"hi {mark}",
                    tools=[down],  # type: ignore[list-item]
                    tool_choice="required",
                    stream=stream,
                )
            error = caught.value.body
            assert caught.value.status_code == 502, error
            assert error["code"] == "upstream_error" and listing_error in error["message"], error  # type: ignore[index]
            assert "'down'" in error["message"] and "required" in error["message"]  # type: ignore[index]
    assert _sent(fake_upstream, mark) == []  # no model turn


@pytest.mark.parametrize("where", ["request", "app"])
def test_tool_choice_required_with_no_allowed_mcp_tool_is_a_400_at_tool_choice(
    compat: Tenant, fake_upstream: FakeUpstreamThread, app: McpApp, where: str
) -> None:
    """The server was listed but offers none of its tools: the request's ``allowed_tools`` keep none of them, or the
    platform's app allows none. A 400 naming ``tool_choice`` says why no tool is available (as a forced
    ``{"type": "mcp"}`` server offering none is a 400 naming it)."""
    end_user_id, key = compat.end_user()
    if where == "request":
        tool = mcp_tool(compat, allowed_tools=["nope"])
        reason = "tools[0].allowed_tools"
    else:
        tool = mcp_tool(compat, server_label="empty", server_url=_app_on(compat, app.url, allowed_tools=["nope"]))
        reason = "'empty' lists no tools"
    mark = uuid.uuid4().hex
    served = len(app.calls)
    with compat.sdk(key) as sdk:
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as caught:
                sdk.responses.create(
                    model=model(compat, "echo-agent"),
                    input=f"hi {mark}",
                    tools=[tool],  # type: ignore[list-item]
                    tool_choice="required",
                    stream=stream,
                )
            error = caught.value.body
            assert (error["code"], error["param"]) == ("invalid_request", "tool_choice"), error  # type: ignore[index]
            assert reason in error["message"] and "no tool" in error["message"], error  # type: ignore[index]
    assert _sent(fake_upstream, mark) == [] and len(app.calls) == served  # no model turn, no tool call
    assert compat.budget_rows(end_user_id) == []


def test_tool_choice_auto_with_an_mcp_server_that_cannot_be_listed_still_answers(
    compat: Tenant, fake_upstream: FakeUpstreamThread
) -> None:
    """``auto`` needs no tool: with none offered (the only server failed its listing) the model answers, and the
    upstream request carries no tool_choice (a chat API refuses ``auto`` without tools)."""
    _, key = compat.end_user()
    down = mcp_tool(compat, server_label="down", server_url=_app_on(compat, f"http://127.0.0.1:{free_port()}/mcp"))
    mark = uuid.uuid4().hex
    with compat.sdk(key) as sdk:
        response = sdk.responses.create(
            model=model(compat, "plain"),
            input=f"hi {mark}",
            tools=[down],  # type: ignore[list-item]
            tool_choice="auto",
        )
    assert response.status == "completed" and types_of(response.output) == ["mcp_list_tools", "message"]
    assert response.output[0].error  # type: ignore[union-attr]
    (sent,) = _sent(fake_upstream, mark)
    assert "tool_choice" not in sent and "tools" not in sent
