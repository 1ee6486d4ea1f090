"""One provider-conformance suite, run against every adapter kind (SPEC §7.3-§7.5, §14): the official openai SDK
must see the same-shaped results for the same conversation through each of them. Rows live in providers_conftest.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import make_settings
from tests.e2e.providers_conftest import BACKUP_PRICES, ROWS, THOUGHT, TOOLS, Row, Stack, build_stack, session_id
from tests.support.invariants import checked_gateway
from tests.support.seed import FAKE_PROVIDER_KEY, logs_for
from tests.support.servers import GatewayServer
from tollway.fake_upstream.gemini import THOUGHT_SIGNATURE
from tollway.fake_upstream.routes import RecordedRequest
from tollway.fake_upstream.server import FakeUpstreamThread

USER: Any = [{"role": "user", "content": "Hello, Tollway!"}]
IDS = [row.id for row in ROWS]


@pytest.fixture(scope="module", params=ROWS, ids=IDS)
def stack(
    request: pytest.FixtureRequest, admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> Iterator[Stack]:
    built = build_stack(admin, gateway.url, fake_upstream, request.param)
    yield built
    built.tenant.client.close()


@pytest.fixture
def sdk(gateway: GatewayServer, stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=stack.tenant.platform_key, max_retries=0, timeout=30
    ) as client:
        yield client


def last_request(fake: FakeUpstreamThread) -> RecordedRequest:
    return fake.requests[-1]


def sse_body(gateway: GatewayServer, stack: Stack, model: str) -> tuple[bytes, str]:
    body = {"model": model, "messages": USER, "stream": True}
    headers = {"Authorization": f"Bearer {stack.tenant.platform_key}"}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        return b"".join(r.iter_bytes()), r.headers["x-request-id"]


# Non-stream, stream, tool calls, reasoning.


def test_non_stream(sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="echo", messages=USER)
    completion = raw.parse()
    assert (completion.object, completion.model) == ("chat.completion", "echo")
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert (choice.index, choice.message.role, choice.finish_reason) == (0, "assistant", "stop")
    assert choice.message.content == "Hello, Tollway!"
    assert choice.message.tool_calls is None
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert raw.headers["x-tollway-provider"] == stack.tenant.provider_slug
    sent = last_request(fake_upstream)
    if stack.row.kind == "anthropic":
        assert sent.path == "/v1/messages"
        assert (sent.headers["anthropic-version"], sent.body["max_tokens"]) == ("2023-06-01", 1000)
        assert "x-api-key" in sent.headers and "authorization" not in sent.headers
    elif stack.row.kind == "gemini":
        assert sent.path == "/v1beta/models/fake%2Fecho:generateContent"
        assert sent.query == "" and "x-goog-api-key" in sent.headers  # never the key in the URL
        assert sent.body["generationConfig"]["maxOutputTokens"] == 1000
    else:
        limit = "max_completion_tokens" if stack.row.kind == "openai" else "max_tokens"
        assert sent.body[limit] == 1000 and sent.headers["authorization"].startswith("Bearer ")


def test_stream_exact_text(sdk: openai.OpenAI, stack: Stack) -> None:
    chunks = list(sdk.chat.completions.create(model="echo", messages=USER, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello, Tollway!"
    assert all(c.choices and c.usage is None and c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert {c.model for c in chunks} == {"echo"}
    assert [c.choices[0].finish_reason for c in chunks].count("stop") == 1
    assert chunks[-1].choices[0].finish_reason == "stop"
    if stack.row.dialect == "asi1-old":  # the init_thought event, kept at the top level with an empty delta
        assert any((c.model_extra or {}).get("init_thought") for c in chunks)


def test_tool_call_round_trip(sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread) -> None:
    completion = sdk.chat.completions.create(model="tool", messages=USER, tools=TOOLS)
    assert completion.choices[0].finish_reason == "tool_calls"
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.type == "function" and call.id
    assert (call.function.name, orjson.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    follow = sdk.chat.completions.create(
        model="echo",
        tools=TOOLS,
        messages=[
            *USER,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
            {"role": "user", "content": "thanks"},
        ],
    )
    assert follow.choices[0].message.content == "thanks"
    assert_tool_result_sent(stack.row, last_request(fake_upstream).body, call.id)
    streamed = list(sdk.chat.completions.create(model="tool", messages=USER, tools=TOOLS, stream=True))
    deltas = [d for c in streamed if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert deltas[0].id and deltas[0].function is not None and deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function is not None)
    assert orjson.loads(arguments) == {"city": "Paris"}
    assert streamed[-1].choices[0].finish_reason == "tool_calls"


def assert_tool_result_sent(row: Row, body: dict[str, Any], call_id: str) -> None:
    if row.kind == "anthropic":
        assert body["messages"][1]["content"] == [
            {"type": "tool_use", "id": call_id, "name": "get_weather", "input": {"city": "Paris"}}
        ]
        assert body["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": call_id, "content": "sunny"}
        assert body["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}
    elif row.kind == "gemini":
        # The call's thought signature came back with it (extra_content on the tool call, SPEC §7.6).
        call = {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": THOUGHT_SIGNATURE,
        }
        assert body["contents"][1]["parts"] == [call]
        response = {"name": "get_weather", "response": {"content": "sunny"}}
        assert body["contents"][2]["parts"][0] == {"functionResponse": response}
        assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    else:
        assert body["messages"][2] == {"role": "tool", "tool_call_id": call_id, "content": "sunny"}


def test_reasoning_becomes_reasoning_content(sdk: openai.OpenAI, stack: Stack) -> None:
    completion = sdk.chat.completions.create(model="thinker", messages=USER)
    assert (completion.choices[0].message.model_extra or {}).get("reasoning_content") == THOUGHT
    assert completion.choices[0].message.content == "Hello, Tollway!"
    chunks = list(sdk.chat.completions.create(model="thinker", messages=USER, stream=True))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks)
    if stack.row.dialect == "asi1-old":  # old ASI:One streams thoughts as top-level thought events (SPEC §7.5)
        assert [c.model_extra["thought"] for c in chunks if (c.model_extra or {}).get("thought")] == [THOUGHT]
    else:
        assert reasoning == THOUGHT
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello, Tollway!"


# JSON mode and the capability table.


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}},
    ],
    ids=["json_object", "json_schema"],
)
def test_json_mode_or_refusal(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread, response_format: Any
) -> None:
    before = fake_upstream.request_count
    if not stack.row.json_mode:
        with pytest.raises(openai.BadRequestError) as err:
            sdk.chat.completions.create(model="echo", messages=USER, response_format=response_format)
        assert (err.value.code, err.value.param) == ("unsupported_parameter", "response_format")
        assert stack.tenant.provider_slug in err.value.message and "response_format" in err.value.message
        assert fake_upstream.request_count == before
        return
    completion = sdk.chat.completions.create(model="echo", messages=USER, response_format=response_format)
    assert completion.choices[0].message.content == "Hello, Tollway!"
    sent = last_request(fake_upstream).body
    if stack.row.kind == "gemini":
        assert sent["generationConfig"]["responseMimeType"] == "application/json"
        if response_format["type"] == "json_schema":
            assert sent["generationConfig"]["responseJsonSchema"] == {"type": "object"}
    else:
        assert sent["response_format"] == response_format


@pytest.mark.parametrize(
    ("params", "param", "refused_by"),
    [
        ({"n": 2}, "n", {"anthropic", "asi1"}),
        ({"logprobs": True}, "logprobs", {"anthropic", "gemini", "asi1"}),
        ({"temperature": 1.5}, "temperature", {"anthropic"}),
        ({"presence_penalty": 0.5}, "presence_penalty", {"anthropic"}),
        ({"n": 1, "presence_penalty": 0, "logprobs": False, "parallel_tool_calls": True}, None, set()),
    ],
    ids=["n", "logprobs", "temperature", "penalty", "neutral"],
)
def test_capability_table(
    sdk: openai.OpenAI, stack: Stack, params: dict[str, Any], param: str | None, refused_by: set[str]
) -> None:
    extra: Any = {"tools": TOOLS} if "parallel_tool_calls" in params else {}
    if stack.row.kind in refused_by:
        with pytest.raises(openai.BadRequestError) as err:
            sdk.chat.completions.create(model="echo", messages=USER, **params, **extra)
        assert (err.value.code, err.value.param) == ("unsupported_parameter", param)
        assert stack.tenant.provider_slug in err.value.message
    else:
        completion = sdk.chat.completions.create(model="echo", messages=USER, **params, **extra)
        assert len(completion.choices) == params.get("n", 1)


def test_tool_arguments_must_be_objects_where_the_wire_needs_one(sdk: openai.OpenAI, stack: Stack) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "[1, 2]"}}
    messages: Any = [*USER, {"role": "assistant", "content": None, "tool_calls": [call]}]
    messages.append({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
    if stack.row.kind in ("anthropic", "gemini"):
        with pytest.raises(openai.BadRequestError) as err:
            sdk.chat.completions.create(model="echo", messages=messages, tools=TOOLS)
        assert (err.value.code, err.value.param) == ("invalid_request", "messages[1].tool_calls[0].function.arguments")
    else:
        assert sdk.chat.completions.create(model="echo", messages=messages, tools=TOOLS).choices


# Usage and billing.


def test_usage_exact_with_cached_tokens(sdk: openai.OpenAI, stack: Stack) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="usage", messages=USER)
    usage = raw.parse().usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1200, 300, 1500)
    assert usage.prompt_tokens_details.cached_tokens == 200
    (row,) = logs_for(stack.tenant, raw.headers["x-request-id"])
    # SPEC §9.2: 1,200 prompt (200 cached) + 300 completion at $0.15 / $0.075 / $0.60 per Mtok
    assert (row["cost_usd"], row["cached_tokens"], row["token_count_method"]) == (0.000345, 200, "reported")
    streamed = list(
        sdk.chat.completions.create(model="usage", messages=USER, stream=True, stream_options={"include_usage": True})
    )
    final = streamed[-1].usage
    assert streamed[-1].choices == [] and final is not None and final.prompt_tokens_details is not None
    assert (final.prompt_tokens, final.completion_tokens, final.prompt_tokens_details.cached_tokens) == (1200, 300, 200)


# Errors: mapping, mid-stream, fallback.


ERROR_MAPPING = [
    ("error-400", 1, (400, "upstream_invalid_request", "invalid_request_error"), "rejected the request"),
    ("error-401", 1, (502, "upstream_error", "upstream_error"), "returned HTTP 401"),
    ("error-429", 3, (429, "upstream_rate_limited", "rate_limit_error"), "returned HTTP 429"),
    ("error-500", 1, (502, "upstream_error", "upstream_error"), "returned HTTP 500"),
]


@pytest.mark.parametrize(("model", "attempts", "error", "says"), ERROR_MAPPING, ids=[m[0] for m in ERROR_MAPPING])
def test_error_mapping(
    sdk: openai.OpenAI,
    stack: Stack,
    fake_upstream: FakeUpstreamThread,
    model: str,
    attempts: int,
    error: tuple[int, str, str],
    says: str,
) -> None:
    before = fake_upstream.request_count
    with pytest.raises(openai.APIStatusError) as err:
        sdk.chat.completions.create(model=model, messages=USER)
    status = model.removeprefix("error-")
    assert (err.value.status_code, err.value.code, err.value.type) == error
    assert f"Upstream provider '{stack.tenant.provider_slug}' {says}: " in err.value.message
    assert "simulated HTTP" in err.value.message  # the redacted excerpt of the provider's own error body
    assert FAKE_PROVIDER_KEY not in err.value.message and "sk-fakeprovider" not in err.value.message
    if status == "401":  # the fake echoes the refused key, as real providers do
        assert "incorrect API key provided: [redacted]" in err.value.message
    assert fake_upstream.request_count - before == attempts


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_malformed_answer_is_upstream_error(
    sdk: openai.OpenAI, fake_upstream: FakeUpstreamThread, stream: bool
) -> None:
    before = fake_upstream.request_count
    with pytest.raises(openai.APIStatusError) as err:
        list(sdk.chat.completions.create(model="garbage", messages=USER, stream=stream))
    assert (err.value.status_code, err.value.code) == (502, "upstream_error")
    assert fake_upstream.request_count - before == 1  # the provider did answer: no retry, fallback only


@pytest.mark.parametrize("model", ["mid-error", "cut"])
def test_mid_stream_failure_is_an_error_event_without_done(gateway: GatewayServer, stack: Stack, model: str) -> None:
    body, request_id = sse_body(gateway, stack, model)
    assert b"[DONE]" not in body
    events = [orjson.loads(line[6:]) for line in body.split(b"\n\n") if line.startswith(b"data: ")]
    assert events[-1]["error"]["code"] == "upstream_error"
    assert (
        "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]) == "Hello! I"
    )  # the first two pieces
    (row,) = logs_for(stack.tenant, request_id)
    assert (row["status"], row["error_code"]) == ("interrupted", "upstream_error")


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_fallback_billed_at_the_serving_row(sdk: openai.OpenAI, stack: Stack, stream: bool) -> None:
    started = time.monotonic()
    raw = sdk.chat.completions.with_raw_response.create(
        model="fallback",
        messages=USER,
        stream=stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    )
    parsed: Any = raw.parse()
    usage = list(parsed)[-1].usage if stream else parsed.usage
    assert time.monotonic() - started < 5  # one failed attempt with retries (Retry-After: 0), then the backup
    assert raw.headers["x-tollway-provider"] == stack.backup_slug
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 6)
    rows = logs_for(stack.tenant, raw.headers["x-request-id"], expected=2)
    time.sleep(0.05)  # the failed attempts are logged before the success; let the group commit settle
    rows = logs_for(stack.tenant, raw.headers["x-request-id"], expected=2)
    failed = [r for r in rows if r["status"] == "error"]
    (served,) = [r for r in rows if r["status"] == "success"]
    # The first try and up to 2 retries on 503 (fewer once the row's circuit breaker opens), each at zero cost.
    assert 1 <= len(failed) <= 3 and all(r["cost_usd"] == 0 for r in failed)
    assert served["provider_model"] == "fake/usage?in=5&out=6"
    assert {r["provider_id"] for r in failed} != {served["provider_id"]}
    price_in, price_out = (float(BACKUP_PRICES[k]) for k in ("input_price_per_mtok", "output_price_per_mtok"))
    assert served["cost_usd"] == pytest.approx((5 * price_in + 6 * price_out) / 1e6)


# ASI:One extensions (SPEC §7.5) and their absence elsewhere.


def test_asi1_extensions_forwarded_only_to_asi1(
    gateway: GatewayServer, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    extensions = {"agent_address": "agent1qxyz", "web_search": True, "planner_mode": False, "study_mode": True}
    session = session_id()
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "echo", "messages": USER, "max_tokens": 0, "seed": 7, "user": "end-user-1", **extensions},
        headers={"Authorization": f"Bearer {stack.tenant.platform_key}", "x-session-id": session},
    )
    assert response.status_code == 200, response.text
    sent = last_request(fake_upstream)
    body = response.json()
    if stack.row.asi1:
        assert sent.headers["x-session-id"] == session
        assert {k: sent.body[k] for k in extensions} == extensions
        assert sent.body["max_tokens"] == 1000  # 0 means the default: the row's output limit
        assert "seed" not in sent.body and "user" not in sent.body
    else:
        assert "x-session-id" not in sent.headers
        assert not set(extensions) & set(sent.body or {})
    if stack.row.kind == "anthropic":
        assert sent.body["metadata"] == {"user_id": "end-user-1"} and "seed" not in sent.body
    elif stack.row.kind == "gemini":
        assert sent.body["generationConfig"]["seed"] == 7
    if stack.row.dialect == "asi1":
        assert (body["conversation_id"], body["executable_data"]) == ("conv_fake", [])
        assert "matched_stop" not in body["choices"][0]
    elif stack.row.dialect == "asi1-old":
        assert body["executed_tool_calls"][0]["tool_name"] == "web_search"
        assert body["choices"][0]["finish_reason"] == "stop"  # no OpenAI-form call remains
        assert "tool_calls" not in body["choices"][0]["message"]
        assert body["thought"] and "stop_reason" not in body["choices"][0]
    else:
        assert not {"thought", "executable_data", "conversation_id", "executed_tool_calls"} & set(body)


# Timeouts, redirects and body caps: a gateway with tight limits (SQLite only; the store plays no part).


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp: Path = tmp_path_factory.mktemp("tight")
    settings = make_settings(
        tmp,
        f"sqlite:///{tmp / 'tollway.db'}",
        first_byte_timeout_s=0.2,
        total_timeout_s=0.6,
        upstream_max_body_bytes=2048,
    )
    with checked_gateway(settings) as server:
        yield server


@pytest.fixture(scope="module")
def tight_stacks(tight: GatewayServer, fake_upstream: FakeUpstreamThread) -> Iterator[dict[str, Stack]]:
    assert tight.settings.admin_key is not None
    headers = {"Authorization": f"Bearer {tight.settings.admin_key}"}
    with httpx.Client(base_url=tight.url, headers=headers, timeout=30) as admin:
        stacks = {row.id: build_stack(admin, tight.url, fake_upstream, row) for row in ROWS}
    yield stacks
    for built in stacks.values():
        built.tenant.client.close()


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_timeout_redirect_and_body_caps(
    tight: GatewayServer, tight_stacks: dict[str, Stack], fake_upstream: FakeUpstreamThread, row: Row
) -> None:
    key = tight_stacks[row.id].tenant.platform_key
    with openai.OpenAI(base_url=tight.url + "/v1", api_key=key, max_retries=0, timeout=30) as client:
        for stream in (False, True):
            started = time.monotonic()
            with pytest.raises(openai.APIStatusError) as err:
                list(client.chat.completions.create(model="slow", messages=USER, stream=stream))
            assert (err.value.status_code, err.value.code) == (504, "upstream_timeout")
            assert time.monotonic() - started < 1.5
        before = fake_upstream.request_count
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="redirect", messages=USER)
        assert (err.value.status_code, err.value.code) == (502, "upstream_error")
        assert "returned HTTP 307" in err.value.message
        assert fake_upstream.request_count - before == 1  # never followed, never retried
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="big", messages=USER)
        assert (err.value.status_code, "size limit" in err.value.message) == (502, True)
        # An event over the cap: a 502 before the first byte, or (asi1-old opens with init_thought) an error event.
        with pytest.raises(openai.APIError) as caught:
            list(
                client.chat.completions.create(
                    model="echo", messages=[{"role": "user", "content": "x" * 3000}], stream=True
                )
            )
        assert "size limit" in caught.value.message
