"""The Responses API end to end (SPEC §7.6) with the official openai SDK: plain and streamed creates, function tools
over a ``previous_response_id`` chain, GET/DELETE, tenant isolation, pre-flight errors, usage rows and money.

Each behaviour runs through a provider called natively (kind ``openai``, ``/responses``) and through chat-only
providers (``openai_compatible``, and ``anthropic`` for translation), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.support.invariants import assert_invariants
from tests.support.seed import Tenant, create_model, create_provider, create_tenant, logs_for
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

KINDS = {"openai": "openai", "openai_compatible": "openai", "anthropic": "anthropic"}  # kind -> fake dialect
MODELS = {
    "echo": "fake/echo",
    "usage": "fake/usage?in=1200&out=300&cached=200",
    "tool": 'fake/tool-call?name=get_weather&args={"city":"Paris"}',
    "mid-error": "fake/stream-error?after=2",
    "words": "fake/words?n=50",
    "too-long": "fake/error?status=400&type=context_length_exceeded",
    "bad-param": "fake/error?status=422&param=temperature",
    "limited": "fake/error?status=429&retry_after=0",
    "limited-stream": "fake/error?status=429&retry_after=0",  # its own row: five 429s in a row open a circuit
}
TOOLS: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
UPSTREAM_PATHS = {"openai": "/v1/responses", "openai_compatible": "/v1/chat/completions", "anthropic": "/v1/messages"}


class Stack:
    def __init__(self, kind: str, tenant: Tenant, sdk: openai.OpenAI) -> None:
        self.kind, self.tenant, self.sdk = kind, tenant, sdk


@pytest.fixture(scope="module")
def stacks(
    admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> Iterator[dict[str, Stack]]:
    built: dict[str, Stack] = {}
    for kind, dialect in KINDS.items():
        provider = create_provider(admin, fake_upstream.dialect_base_url(dialect), kind=kind)
        for slug, upstream in MODELS.items():
            extra = {"cached_input_price_per_mtok": "0.075"} if slug == "usage" else {}
            create_model(admin, provider["id"], slug, upstream, **extra)
        create_model(admin, provider["id"], "min16", "fake/echo", min_output_tokens=16)
        tenant = create_tenant(admin, gateway.url, provider["id"], provider["slug"])
        sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=tenant.platform_key, max_retries=0, timeout=30)
        built[kind] = Stack(kind, tenant, sdk)
    yield built
    for stack in built.values():
        stack.sdk.close()
        stack.tenant.client.close()


@pytest.fixture(params=list(KINDS))
def stack(request: pytest.FixtureRequest, stacks: dict[str, Stack]) -> Stack:
    return stacks[request.param]


def _last_upstream(fake: FakeUpstreamThread, path: str) -> dict[str, Any]:
    found = [r for r in fake.requests if r.path == path]
    assert found, f"no upstream request to {path}"
    body: dict[str, Any] = found[-1].body
    return body


def _raw(gateway: GatewayServer, key: str, method: str, path: str, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.request(method, gateway.url + path, json=body, headers=headers, timeout=30)


# Plain create.


def test_create_returns_the_response_shape(stack: Stack, fake_upstream: FakeUpstreamThread) -> None:
    raw = stack.sdk.responses.with_raw_response.create(model="echo", input="Hello there", instructions="Be brief.")
    response = raw.parse()
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.model == "echo" and response.output_text == "Hello there" and response.error is None
    assert response.output[0].type == "message" and response.output[0].content[0].type == "output_text"
    assert response.usage is not None and response.usage.total_tokens == response.usage.input_tokens + 2
    assert raw.headers["x-tollway-provider"] == stack.tenant.provider_slug
    upstream = _last_upstream(fake_upstream, UPSTREAM_PATHS[stack.kind])
    if stack.kind == "openai":  # native: full input, instructions and store false (Tollway keeps the state)
        assert upstream["store"] is False and upstream["instructions"] == "Be brief."
        assert upstream["input"] == [{"type": "message", "role": "user", "content": "Hello there"}]
        assert upstream["max_output_tokens"] == 1000
    elif stack.kind == "anthropic":
        assert upstream["system"] == "Be brief." and upstream["max_tokens"] == 1000
    else:
        assert upstream["messages"][0] == {"role": "system", "content": "Be brief."}


def test_usage_row_has_request_type_response_and_exact_cost(stack: Stack) -> None:
    raw = stack.sdk.responses.with_raw_response.create(model="usage", input="x", metadata={"ticket": "42"})
    usage = raw.parse().usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (1200, 300, 1500)
    assert usage.input_tokens_details.cached_tokens == 200
    (row,) = logs_for(stack.tenant, raw.headers["x-request-id"])
    # SPEC §9.2: 1,200 prompt (200 cached) + 300 completion at $0.15 / $0.075 / $0.60 per Mtok
    assert (row["request_type"], row["cost_usd"], row["cached_tokens"]) == ("response", 0.000345, 200)
    assert (row["status"], row["token_count_method"], row["metadata"]) == ("success", "reported", {"ticket": "42"})


# Streaming.


def test_stream_is_parsed_by_the_sdk(stack: Stack) -> None:
    with stack.sdk.responses.stream(model="usage", input="hello") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert types.count("response.output_item.added") == 1 and types.count("response.output_item.done") == 1
    for expected in ("response.content_part.added", "response.output_text.done", "response.content_part.done"):
        assert expected in types
    sequence = [e.sequence_number for e in events]
    assert sequence == list(range(len(events)))
    assert {e.response.id for e in events if e.type.startswith("response.") and hasattr(e, "response")} == {final.id}
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert final.output_text == text == "Hello! I am a fake model."
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (1200, 300)


def test_stream_wire_format_has_named_events_and_no_done(
    stack: Stack, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> None:
    body = {"model": "echo", "input": "one two", "stream": True}
    headers = {"Authorization": f"Bearer {stack.tenant.platform_key}"}
    with httpx.stream("POST", gateway.url + "/v1/responses", json=body, headers=headers, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        payload = response.read().decode()
    blocks = [b for b in payload.split("\n\n") if b]
    assert "[DONE]" not in payload
    for block in blocks:
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        assert orjson.loads(data_line[6:])["type"] == event_line[7:]
    assert blocks[-1].startswith("event: response.completed")
    (row,) = logs_for(stack.tenant, response.headers["x-request-id"])
    assert (row["request_type"], row["status"], row["finish_reason"]) == ("response", "success", "stop")
    assert row["ttft_ms"] is not None
    if stack.kind == "openai":
        assert _last_upstream(fake_upstream, "/v1/responses")["stream"] is True


def test_mid_stream_failure_is_response_failed_and_settles_interrupted(stack: Stack) -> None:
    stream = stack.sdk.responses.create(model="mid-error", input="a b c d", stream=True)
    events = list(stream)
    assert events[-1].type == "response.failed"
    failed = events[-1].response
    assert failed.status == "failed" and failed.error is not None and failed.error.code == "upstream_error"
    assert [e.type for e in events].count("response.output_text.delta") == 2
    request_id = stream.response.headers["x-request-id"]
    (row,) = logs_for(stack.tenant, request_id)
    assert (row["status"], row["error_code"], row["request_type"]) == ("interrupted", "upstream_error", "response")
    assert row["cost_usd"] > 0


def _create(stack: Stack, model: str, stream: bool) -> None:
    if stream:
        list(stack.sdk.responses.create(model=model, input="hi", stream=True))
    else:
        stack.sdk.responses.create(model=model, input="hi")


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_upstream_refusals_map_as_for_chat(stack: Stack, fake_upstream: FakeUpstreamThread, stream: bool) -> None:
    """SPEC §3, §14.2 on /v1/responses, natively (the Responses API's own refusal, param ``input``) and translated;
    a stream gets the same error before its first byte."""
    before = fake_upstream.request_count
    with pytest.raises(openai.BadRequestError) as too_long:
        _create(stack, "too-long", stream)
    assert (too_long.value.code, too_long.value.type) == ("context_length_exceeded", "invalid_request_error")
    assert too_long.value.param == {"openai": "input", "openai_compatible": "messages", "anthropic": None}[stack.kind]
    with pytest.raises(openai.UnprocessableEntityError) as bad:
        _create(stack, "bad-param", stream)
    assert (bad.value.code, bad.value.param) == ("upstream_invalid_request", "temperature")
    assert fake_upstream.request_count - before == 2
    with pytest.raises(openai.RateLimitError) as limited:
        _create(stack, "limited-stream" if stream else "limited", stream)
    assert (limited.value.code, limited.value.response.headers["retry-after"]) == ("upstream_rate_limited", "1")
    assert fake_upstream.request_count - before == 2 + 3
    rows = logs_for(stack.tenant, limited.value.response.headers["x-request-id"], expected=3)
    assert [(r["status"], r["cost_usd"], r["request_type"]) for r in rows] == [("error", 0, "response")] * 3


def test_incomplete_when_the_output_limit_is_reached(stack: Stack) -> None:
    response = stack.sdk.responses.create(model="words", input="x", max_output_tokens=20)
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == " ".join(f"w{i}" for i in range(1, 21))
    with stack.sdk.responses.stream(model="words", input="x", max_output_tokens=20) as stream:
        events = list(stream)
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


# Function tools over a previous_response_id chain.


def test_function_tools_over_a_previous_response_chain(stack: Stack, fake_upstream: FakeUpstreamThread) -> None:
    sdk = stack.sdk
    first = sdk.responses.create(model="tool", input="Weather in Paris?", tools=TOOLS, tool_choice="auto")
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert orjson.loads(call.arguments) == {"city": "Paris"} and call.id != call.call_id
    second = sdk.responses.create(
        model="echo",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"}],
        tools=TOOLS,
    )
    assert second.status == "completed" and second.previous_response_id == first.id
    upstream = _last_upstream(fake_upstream, UPSTREAM_PATHS[stack.kind])
    if stack.kind == "openai":
        assert [item["type"] for item in upstream["input"]] == ["message", "function_call", "function_call_output"]
        assert upstream["input"][1]["call_id"] == upstream["input"][2]["call_id"] == call.call_id
        assert upstream["tools"] == TOOLS
    elif stack.kind == "anthropic":
        blocks = [b for m in upstream["messages"] for b in m["content"] if isinstance(b, dict)]
        assert {b["type"] for b in blocks} >= {"tool_use", "tool_result"}
        assert upstream["tools"][0]["name"] == "get_weather"
    else:
        roles = [m["role"] for m in upstream["messages"]]
        assert roles == ["user", "assistant", "tool"]
        assert upstream["messages"][1]["tool_calls"][0]["id"] == upstream["messages"][2]["tool_call_id"]
    third = sdk.responses.create(model="echo", previous_response_id=second.id, input="And tomorrow?")
    assert third.output_text == "And tomorrow?"
    upstream = _last_upstream(fake_upstream, UPSTREAM_PATHS[stack.kind])
    if stack.kind == "openai":
        kinds = [item["type"] for item in upstream["input"]]
        assert kinds == ["message", "function_call", "function_call_output", "message", "message"]
        assert upstream["input"][3] == {"type": "message", "role": "assistant", "content": second.output_text}


def test_output_items_can_be_sent_back_as_input(stack: Stack) -> None:
    """Manual chaining, without previous_response_id: the SDK re-sends our output objects as they were parsed."""
    first = stack.sdk.responses.create(model="tool", input="Weather?", tools=TOOLS)
    answer = {"type": "function_call_output", "call_id": first.output[0].call_id, "output": "sunny"}
    follow = stack.sdk.responses.create(model="echo", input=[*first.output, answer, {"role": "user", "content": "ok?"}])
    assert follow.output_text == "ok?"
    echoed = stack.sdk.responses.create(model="echo", input=[*follow.output, {"role": "user", "content": "again"}])
    assert echoed.output_text == "again"


def test_streamed_function_call(stack: Stack) -> None:
    with stack.sdk.responses.stream(model="tool", input="Weather?", tools=TOOLS) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types and "response.function_call_arguments.done" in types
    (call,) = final.output
    assert call.type == "function_call" and call.name == "get_weather" and call.arguments == '{"city":"Paris"}'
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == call.arguments


def test_function_call_output_must_answer_an_earlier_call(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        stack.sdk.responses.create(
            model="echo",
            input=[
                {"role": "user", "content": "hi"},
                {"type": "function_call_output", "call_id": "call_unknown", "output": "x"},
            ],
        )
    assert (err.value.code, err.value.param) == ("invalid_request", "input[1].call_id")


# Stored responses: GET, DELETE, isolation.


def test_get_and_delete_a_stored_response(stack: Stack, gateway: GatewayServer) -> None:
    created = stack.sdk.responses.create(model="echo", input="keep me", metadata={"k": "v"})
    fetched = stack.sdk.responses.retrieve(created.id)
    assert (fetched.id, fetched.output_text, fetched.metadata, fetched.status) == (
        created.id,
        "keep me",
        {"k": "v"},
        "completed",
    )
    deleted = _raw(gateway, stack.tenant.platform_key, "DELETE", f"/v1/responses/{created.id}")
    assert deleted.status_code == 200 and deleted.json() == {"id": created.id, "object": "response", "deleted": True}
    for method in ("GET", "DELETE"):
        gone = _raw(gateway, stack.tenant.platform_key, method, f"/v1/responses/{created.id}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    with pytest.raises(openai.NotFoundError) as err:
        stack.sdk.responses.create(model="echo", input="again", previous_response_id=created.id)
    assert err.value.param == "previous_response_id"


def test_store_false_keeps_nothing(stack: Stack, gateway: GatewayServer) -> None:
    created = stack.sdk.responses.create(model="echo", input="forget me", store=False)
    assert created.store is False
    assert _raw(gateway, stack.tenant.platform_key, "GET", f"/v1/responses/{created.id}").status_code == 404


def test_streamed_response_is_stored_before_the_terminal_event(stack: Stack) -> None:
    with stack.sdk.responses.stream(model="echo", input="stream and keep") as stream:
        final = stream.get_final_response()
    assert stack.sdk.responses.retrieve(final.id).output_text == "stream and keep"


@pytest.mark.parametrize("kind", ["openai"])
def test_other_owners_responses_are_not_found(
    kind: str, stacks: dict[str, Stack], admin: httpx.Client, gateway: GatewayServer
) -> None:
    owner = stacks[kind]
    created = owner.sdk.responses.create(model="echo", input="mine")
    stranger = create_tenant(admin, gateway.url, owner.tenant.provider_id, owner.tenant.provider_slug)
    user = owner.tenant.client.post(
        f"/v1/platforms/{owner.tenant.platform_id}/end-users", json={"external_id": "eu-iso"}
    )
    end_user_key = user.json()["api_key"]["raw_key"]
    for key in (stranger.platform_key, end_user_key):
        for method in ("GET", "DELETE"):
            response = _raw(gateway, key, method, f"/v1/responses/{created.id}")
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        chained = _raw(
            gateway, key, "POST", "/v1/responses", {"model": "echo", "input": "x", "previous_response_id": created.id}
        )
        assert chained.status_code == 404, chained.text
        assert chained.json()["error"]["param"] == "previous_response_id"
    # the end user's own response is invisible to the platform key, too
    mine = _raw(gateway, end_user_key, "POST", "/v1/responses", {"model": "echo", "input": "eu"}).json()
    assert _raw(gateway, end_user_key, "GET", f"/v1/responses/{mine['id']}").status_code == 200
    assert _raw(gateway, owner.tenant.platform_key, "GET", f"/v1/responses/{mine['id']}").status_code == 404
    assert owner.sdk.responses.retrieve(created.id).id == created.id
    stranger.client.close()


# Pre-flight errors (no upstream call).


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"model": "echo", "input": "x", "frequency_penalty": 1}, 400, "invalid_request", "frequency_penalty"),
        (
            {"model": "echo", "input": "x", "tools": [{"type": "web_search"}]},
            400,
            "unsupported_parameter",
            "tools[0].type",
        ),
        (
            {"model": "echo", "input": "x", "text": {"format": {"type": "text"}}, "response_format": {"type": "text"}},
            400,
            "invalid_request",
            "response_format",
        ),
        ({"model": "min16", "input": "x", "max_output_tokens": 8}, 422, "integer_below_min_value", "max_output_tokens"),
        (
            {"model": "echo", "input": [{"type": "message", "role": "robot", "content": "x"}]},
            400,
            "invalid_request",
            "input[0].role",
        ),
        (
            {"model": "echo", "input": "x", "previous_response_id": "resp_unknown"},
            404,
            "not_found",
            "previous_response_id",
        ),
    ],
)
def test_preflight_errors(
    stacks: dict[str, Stack],
    gateway: GatewayServer,
    fake_upstream: FakeUpstreamThread,
    body: dict[str, Any],
    status: int,
    code: str,
    param: str,
) -> None:
    before = fake_upstream.request_count
    response = _raw(gateway, stacks["openai"].tenant.platform_key, "POST", "/v1/responses", body)
    assert response.status_code == status, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (code, param)
    assert fake_upstream.request_count == before


def test_json_schema_is_refused_for_anthropic_and_forwarded_natively(
    stacks: dict[str, Stack], fake_upstream: FakeUpstreamThread
) -> None:
    text = {"format": {"type": "json_schema", "name": "city", "schema": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as err:
        stacks["anthropic"].sdk.responses.create(model="echo", input="x", text=text)  # type: ignore[arg-type]
    assert (err.value.code, err.value.param) == ("unsupported_parameter", "text.format")
    with pytest.raises(openai.BadRequestError) as err:
        stacks["anthropic"].sdk.responses.create(model="echo", input="x", reasoning={"effort": "low"})
    assert (err.value.code, err.value.param) == ("unsupported_parameter", "reasoning.effort")
    assert "'reasoning.effort'" in err.value.message
    stacks["openai"].sdk.responses.create(model="echo", input="x", text=text)  # type: ignore[arg-type]
    assert _last_upstream(fake_upstream, "/v1/responses")["text"] == text
    stacks["openai_compatible"].sdk.responses.create(model="echo", input="x", text=text)  # type: ignore[arg-type]
    chat = _last_upstream(fake_upstream, "/v1/chat/completions")
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": {"type": "object"}},
    }


# Money: an end user's call charges the budget exactly.


def test_end_user_call_charges_the_budget_exactly(
    admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> None:
    provider = create_provider(admin, fake_upstream.dialect_base_url("openai"), kind="openai")
    # $1,000 per Mtok out, nothing in: ten completion tokens cost exactly $0.01
    prices = {"input_price_per_mtok": "0", "output_price_per_mtok": "1000", "max_output_tokens": 10}
    create_model(admin, provider["id"], "cent", "fake/usage?in=0&out=10", **prices)
    tenant = create_tenant(admin, gateway.url, provider["id"], provider["slug"], topup="1")
    user = tenant.client.post(f"/v1/platforms/{tenant.platform_id}/end-users", json={"external_id": "payer"}).json()
    budget = tenant.client.post(
        f"/v1/platforms/{tenant.platform_id}/end-users/{user['id']}/budget", json={"max_usd": "1"}
    )
    assert budget.status_code == 201, budget.text
    key = user["api_key"]["raw_key"]
    for stream in (False, True):
        response = _raw(gateway, key, "POST", "/v1/responses", {"model": "cent", "input": "x", "stream": stream})
        assert response.status_code == 200, response.text
    me = httpx.get(gateway.url + "/v1/me/budget", headers={"Authorization": f"Bearer {key}"}).json()
    deadline = time.monotonic() + 5
    while me["used_usd"] != 0.02 and time.monotonic() < deadline:
        time.sleep(0.02)
        me = httpx.get(gateway.url + "/v1/me/budget", headers={"Authorization": f"Bearer {key}"}).json()
    assert me["used_usd"] == 0.02
    assert tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()["balance_usd"] == 0.98
    logs = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/logs", params={"end_user_id": user["id"]}).json()
    assert [(r["request_type"], r["cost_usd"], r["charged_usd"]) for r in logs["data"]] == [
        ("response", 0.01, 0.01)
    ] * 2
    assert_invariants(gateway.settings)
    tenant.client.close()
