"""``POST /v1/messages`` (Anthropic's Messages API inbound, SPEC §19) with the official ``anthropic`` SDK as the
client, served by the openai, anthropic and gemini kinds of the fake upstream: text, streams, tool use and thinking
round trips, system and image blocks, errors in Anthropic's envelope, and exact billing as ``request_type
"messages"``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.e2e.providers_conftest import ROWS, THOUGHT, Stack, build_stack
from tests.support.invariants import assert_invariants
from tests.support.seed import create_tenant, logs_for
from tests.support.servers import GatewayServer
from tollway.fake_upstream.anthropic import SIGNATURE
from tollway.fake_upstream.routes import RecordedRequest
from tollway.fake_upstream.server import FakeUpstreamThread

KINDS = [row for row in ROWS if row.id in ("openai", "anthropic", "gemini")]
USER: Any = [{"role": "user", "content": "Hello, Tollway!"}]
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}
PNG = "iVBORw0KGgo="


@pytest.fixture(scope="module", params=KINDS, ids=[row.id for row in KINDS])
def stack(
    request: pytest.FixtureRequest, admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> Iterator[Stack]:
    built = build_stack(admin, gateway.url, fake_upstream, request.param)
    yield built
    built.tenant.client.close()


@pytest.fixture
def client(gateway: GatewayServer, stack: Stack) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=stack.tenant.platform_key, max_retries=0, timeout=30) as sdk:
        yield sdk


def upstream_body(fake: FakeUpstreamThread, marker: str) -> Any:
    """The body of the last upstream request whose JSON mentions ``marker`` (the fake is shared)."""
    for recorded in reversed(fake.requests):
        if marker in orjson.dumps(recorded.body).decode():
            return recorded.body
    raise AssertionError(f"no upstream request mentions {marker!r}")


def upstream_requests(fake: FakeUpstreamThread, marker: str) -> list[RecordedRequest]:
    return [r for r in fake.requests if marker in orjson.dumps(r.body).decode()]


def test_non_stream_text(client: anthropic.Anthropic, stack: Stack) -> None:
    raw = client.messages.with_raw_response.create(model="echo", max_tokens=100, messages=USER)
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == "echo"
    assert message.id.startswith("msg_")
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "Hello, Tollway!")]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert raw.headers["x-tollway-provider"] == stack.tenant.provider_slug


def test_authorization_bearer_also_authenticates(gateway: GatewayServer, stack: Stack) -> None:
    response = httpx.post(
        gateway.url + "/v1/messages",
        json={"model": "echo", "max_tokens": 50, "messages": USER},
        headers={"Authorization": f"Bearer {stack.tenant.platform_key}", "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "Hello, Tollway!"}]


def test_stream_text_and_final_usage(client: anthropic.Anthropic, stack: Stack) -> None:
    with client.messages.stream(model="usage", max_tokens=100, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    usage = final.usage
    # fake/usage?in=1200&out=300&cached=200: 1,000 uncached + 200 cache reads in, 300 out
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (1000, 200, 300)
    assert usage.cache_creation_input_tokens == 0


def test_stream_events_are_anthropics(gateway: GatewayServer, stack: Stack) -> None:
    body = {"model": "echo", "max_tokens": 50, "messages": USER, "stream": True}
    headers = {"x-api-key": stack.tenant.platform_key}
    with httpx.stream("POST", gateway.url + "/v1/messages", json=body, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[7:] for line in response.iter_lines() if line.startswith("event: ")]
    assert events[:2] == ["message_start", "ping"]
    assert events[2] == "content_block_start" and "content_block_delta" in events
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_tool_use_round_trip(client: anthropic.Anthropic, stack: Stack, fake_upstream: FakeUpstreamThread) -> None:
    first = client.messages.create(
        model="tool", max_tokens=100, messages=USER, tools=[WEATHER], tool_choice={"type": "any"}
    )
    assert first.stop_reason == "tool_use"
    (call,) = [b for b in first.content if b.type == "tool_use"]
    assert (call.name, call.input) == ("get_weather", {"city": "Paris"})
    marker = f"sunny-{uuid.uuid4().hex[:8]}"
    result = [{"type": "tool_result", "tool_use_id": call.id, "content": marker}]
    history: Any = [*USER, {"role": "assistant", "content": first.content}, {"role": "user", "content": result}]
    second = client.messages.create(model="echo", max_tokens=100, messages=history, tools=[WEATHER])
    assert second.stop_reason == "end_turn"
    sent = upstream_body(fake_upstream, marker)
    if stack.row.kind == "anthropic":
        assert sent["messages"][1]["content"] == [
            {"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Paris"}}
        ]
        assert sent["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": call.id, "content": marker}]
    elif stack.row.kind == "openai":
        assert sent["messages"][1]["tool_calls"][0]["id"] == call.id
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": marker}
    else:
        assert sent["contents"][2]["parts"][0]["functionResponse"]["response"] == {"content": marker}


def test_stream_tool_use(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="tool", max_tokens=100, messages=USER, tools=[WEATHER]) as stream:
        final = stream.get_final_message()
    (call,) = [b for b in final.content if b.type == "tool_use"]
    assert (call.name, call.input, final.stop_reason) == ("get_weather", {"city": "Paris"}, "tool_use")


def test_thinking_blocks_round_trip(
    client: anthropic.Anthropic, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    message = client.messages.create(model="thinker", max_tokens=2048, thinking=THINKING, messages=USER)
    thinking = message.content[0]
    assert thinking.type == "thinking" and thinking.thinking == THOUGHT
    assert thinking.signature == (SIGNATURE if stack.row.kind == "anthropic" else "")
    assert message.content[1].type == "text"
    with client.messages.stream(model="thinker", max_tokens=2048, thinking=THINKING, messages=USER) as stream:
        streamed = stream.get_final_message()
    assert [b.type for b in streamed.content] == ["thinking", "text"]
    assert streamed.content[0].thinking == THOUGHT and streamed.content[0].signature == thinking.signature
    marker = f"again-{uuid.uuid4().hex[:8]}"
    history: Any = [
        *USER,
        {"role": "assistant", "content": [*message.content, {"type": "redacted_thinking", "data": "opaque"}]},
        {"role": "user", "content": marker},
    ]
    client.messages.create(model="echo", max_tokens=2048, thinking=THINKING, messages=history)
    sent = upstream_body(fake_upstream, marker)
    if stack.row.kind == "anthropic":
        assert sent["thinking"] == THINKING
        assert sent["messages"][1]["content"][:2] == [
            {"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE},
            {"type": "redacted_thinking", "data": "opaque"},
        ]
    elif stack.row.kind == "gemini":
        assert sent["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}
        assert "opaque" not in orjson.dumps(sent).decode()
    else:
        assert "thinking" not in sent and "opaque" not in orjson.dumps(sent).decode()


def test_system_as_string_and_blocks(
    client: anthropic.Anthropic, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    for system in ("Be brief.", [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]):
        marker = f"sys-{uuid.uuid4().hex[:8]}"
        client.messages.create(
            model="echo", max_tokens=50, system=system, messages=[{"role": "user", "content": marker}]
        )
        sent = upstream_body(fake_upstream, marker)
        if stack.row.kind == "anthropic":
            assert sent["system"] == "Be brief."
        elif stack.row.kind == "openai":
            assert sent["messages"][0]["role"] == "system"
            assert "Be brief." in orjson.dumps(sent["messages"][0]["content"]).decode()
        else:
            assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}


def test_image_block(client: anthropic.Anthropic, stack: Stack, fake_upstream: FakeUpstreamThread) -> None:
    marker = f"img-{uuid.uuid4().hex[:8]}"
    content: Any = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": marker},
    ]
    client.messages.create(model="echo", max_tokens=50, messages=[{"role": "user", "content": content}])
    sent = upstream_body(fake_upstream, marker)
    if stack.row.kind == "anthropic":
        assert sent["messages"][0]["content"][0] == {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
        }
    elif stack.row.kind == "openai":
        assert sent["messages"][0]["content"][0] == {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{PNG}"},
        }
    else:
        assert sent["contents"][0]["parts"][0] == {"inlineData": {"mimeType": "image/png", "data": PNG}}


def test_bad_key_is_authentication_error(gateway: GatewayServer) -> None:
    sdk = anthropic.Anthropic(base_url=gateway.url, api_key="sk-plat_nope", max_retries=0)
    with sdk, pytest.raises(anthropic.AuthenticationError) as error:
        sdk.messages.create(model="echo", max_tokens=50, messages=USER)
    assert error.value.status_code == 401
    assert error.value.body["type"] == "error"  # type: ignore[index]
    assert error.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_bad_field_is_bad_request_naming_the_path(
    client: anthropic.Anthropic, fake_upstream: FakeUpstreamThread
) -> None:
    before = fake_upstream.request_count
    bad: Any = [{"role": "user", "content": [{"type": "audio", "data": "x"}]}]
    with pytest.raises(anthropic.BadRequestError) as error:
        client.messages.create(model="echo", max_tokens=50, messages=bad)
    assert error.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "messages[0].content[0].type" in error.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as missing:  # the SDK's own check bypassed: a raw post
        client.post("/v1/messages", cast_to=httpx.Response, body={"model": "echo", "messages": USER})
    assert missing.value.body["error"] == {  # type: ignore[index]
        "type": "invalid_request_error",
        "message": "max_tokens is required.",
    }
    assert fake_upstream.request_count == before


def test_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as error:
        client.messages.create(model="no-such-model", max_tokens=50, messages=USER)
    assert error.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_upstream_429_is_rate_limit_error_with_retry_after(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as error:
        client.messages.create(model="error-429", max_tokens=50, messages=USER)
    assert error.value.response.headers["retry-after"] == "1"
    assert error.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_mid_stream_error_is_an_error_event(gateway: GatewayServer, stack: Stack) -> None:
    body = {"model": "mid-error", "max_tokens": 50, "messages": USER, "stream": True}
    headers = {"x-api-key": stack.tenant.platform_key}
    with httpx.stream("POST", gateway.url + "/v1/messages", json=body, headers=headers, timeout=30) as response:
        lines = list(response.iter_lines())
    events = [line[7:] for line in lines if line.startswith("event: ")]
    assert events[-1] == "error" and "message_stop" not in events
    error = orjson.loads(lines[lines.index("event: error") + 1][6:])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"


def test_exact_billing_as_messages(client: anthropic.Anthropic, stack: Stack, gateway: GatewayServer) -> None:
    tenant = stack.tenant
    before = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()["balance_usd"]
    raw = client.messages.with_raw_response.create(model="usage", max_tokens=100, messages=USER)
    rows = logs_for(tenant, raw.headers["x-request-id"])
    assert len(rows) == 1
    row = rows[0]
    # SPEC §9.2: 1,200 prompt (200 cached) + 300 completion at $0.15 / $0.075 / $0.60 per Mtok = $0.000345
    assert (row["request_type"], row["cost_usd"], row["status"]) == ("messages", 0.000345, "success")
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (1200, 200, 300)
    after = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()["balance_usd"]
    assert round((before - after) * 10**9) == 345_000
    transactions = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet/transactions").json()["data"]
    usage_rows = [t for t in transactions if t.get("request_id") == raw.headers["x-request-id"]]
    assert [t["amount_usd"] for t in usage_rows] == [-0.000345]
    assert '"cost":0.000345' in raw.http_response.text  # SPEC §19: usage.cost, the raw cost for a platform key
    body = {"model": "usage", "max_tokens": 100, "messages": USER, "stream": True}
    headers = {"x-api-key": tenant.platform_key}
    streamed = httpx.post(gateway.url + "/v1/messages", json=body, headers=headers, timeout=30)
    deltas = [line for line in streamed.text.splitlines() if line.startswith("data:") and "message_delta" in line]
    assert len(deltas) == 1 and '"cost":0.000345' in deltas[0]
    filtered = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/logs", params={"request_type": "messages"})
    assert raw.headers["x-request-id"] in {r["request_id"] for r in filtered.json()["data"]}
    assert_invariants(gateway.settings)


def test_end_user_budget_charge_and_402(
    admin: httpx.Client, gateway: GatewayServer, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    tenant = create_tenant(admin, gateway.url, stack.tenant.provider_id, stack.tenant.provider_slug, topup="1")
    try:
        user = tenant.client.post(f"/v1/platforms/{tenant.platform_id}/end-users", json={"external_id": "m"}).json()
        budget = tenant.client.post(
            f"/v1/platforms/{tenant.platform_id}/end-users/{user['id']}/budget", json={"max_usd": "0.001"}
        )
        assert budget.status_code == 201, budget.text
        key = user["api_key"]["raw_key"]
        with anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=30) as sdk:
            raw = sdk.messages.with_raw_response.create(model="usage", max_tokens=100, messages=USER)
            rows = logs_for(tenant, raw.headers["x-request-id"])
            assert (rows[0]["cost_usd"], rows[0]["charged_usd"]) == (0.000345, 0.000345)
            assert orjson.loads(raw.http_response.text)["usage"]["cost"] == 0.000345
            me = httpx.get(gateway.url + "/v1/me/budget", headers={"Authorization": f"Bearer {key}"}).json()
            deadline = time.monotonic() + 5
            while me["used_usd"] != 0.000345 and time.monotonic() < deadline:
                time.sleep(0.02)
                me = httpx.get(gateway.url + "/v1/me/budget", headers={"Authorization": f"Bearer {key}"}).json()
            assert me["used_usd"] == 0.000345
            before = fake_upstream.request_count
            # The hold for 100,000 output tokens at $0.60/Mtok ($0.06) cannot fit the $0.000655 left (clamped to
            # the fewest tokens the row allows, it still needs more than what is left): 402 before any upstream call.
            with pytest.raises(anthropic.PaymentRequiredError) as error:
                sdk.messages.create(
                    model="big", max_tokens=100_000, messages=[{"role": "user", "content": "x" * 20_000}]
                )
            assert error.value.status_code == 402
            assert error.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
            assert "budget cannot cover this call" in error.value.body["error"]["message"]  # type: ignore[index]
            assert fake_upstream.request_count == before
    finally:
        tenant.client.close()
    assert_invariants(gateway.settings)


def test_a_provider_refusal_names_the_anthropic_path(client: anthropic.Anthropic, stack: Stack) -> None:
    """Gemini takes no image by URL (SPEC §7.4): the refusal names the path in the caller's body, not in the
    translated conversation (where the system message shifts every index)."""
    content: Any = [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]
    history: Any = [*USER, {"role": "assistant", "content": "Yes?"}, {"role": "user", "content": content}]
    if stack.row.kind != "gemini":
        assert client.messages.create(model="echo", max_tokens=50, system="Brief.", messages=history).content
        return
    with pytest.raises(anthropic.BadRequestError) as error:
        client.messages.create(model="echo", max_tokens=50, system="Brief.", messages=history)
    message = error.value.body["error"]["message"]  # type: ignore[index]
    assert "messages[2].content[1].source" in message and "image_url" not in message
