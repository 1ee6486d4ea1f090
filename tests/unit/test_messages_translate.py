"""Anthropic's Messages API inbound (SPEC §19): the body into the canonical ChatRequest and back out to the
anthropic adapter, the hub answer and chunks into a message and stream events, against golden fixtures
(tests/unit/fixtures/messages). Every rendered message and event is checked with the official ``anthropic`` SDK's
types first, so the output cannot drift from the API."""

from __future__ import annotations

from typing import Any

import anthropic.types
import orjson
import pytest
from anthropic.types.shared.error_response import ErrorResponse
from pydantic import TypeAdapter

from tests.unit.golden import check, load
from tollway.domain.messages_output import MESSAGES, error_body, stop_reason, usage_json
from tollway.domain.messages_request import in_anthropic_terms, parse_messages_request
from tollway.domain.pricing import Usage
from tollway.domain.upstream import ChatResult, StreamChunk
from tollway.errors import (
    AuthenticationError,
    BudgetExhausted,
    InvalidRequest,
    ModelNotFound,
    ProviderUnavailable,
    RateLimited,
    RequestTooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from tollway.providers.anthropic import translate

USER: Any = [{"role": "user", "content": "hi"}]
EVENTS: TypeAdapter[Any] = TypeAdapter(anthropic.types.RawMessageStreamEvent)
ERROR_RESPONSE: TypeAdapter[Any] = TypeAdapter(ErrorResponse)


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 100, "messages": USER, **extra}


def test_request_translation_and_the_anthropic_round_trip() -> None:
    request = parse_messages_request(load("messages", "request_full")["input"])
    canonical = {
        "body": request.body,
        "thinking_blocks": {str(k): v for k, v in request.thinking_blocks.items()},
        "top_k": request.top_k,
        "thinking": request.thinking,
        "image_messages": request.image_messages,
        "output_limit": request.output_limit,
        "tool_choice": [request.tool_choice, request.tool_choice_name, request.parallel_tool_calls],
    }
    upstream = translate.build_payload(request, "claude-x", 4096)
    check("messages", "request_full", {"canonical": canonical, "anthropic": upstream})


def test_the_thinking_budget_stays_below_a_clamped_output_limit() -> None:
    request = parse_messages_request(body(max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 3000}))
    assert translate.build_payload(request, "c", 4096)["thinking"] == {"type": "enabled", "budget_tokens": 3000}
    assert translate.build_payload(request, "c", 2000)["thinking"] == {"type": "enabled", "budget_tokens": 1999}
    assert "thinking" not in translate.build_payload(request, "c", 1024)  # not even the minimum budget fits


def test_prompt_bound_counts_the_thinking_blocks() -> None:
    blocks = [{"type": "thinking", "thinking": "x" * 1000, "signature": "s"}]
    history = [*USER, {"role": "assistant", "content": blocks}, {"role": "user", "content": "again"}]
    with_thinking = parse_messages_request(body(messages=history)).prompt_token_bound(3000)
    without = parse_messages_request(body(messages=[*USER, {"role": "assistant", "content": ""}, history[2]]))
    assert with_thinking - without.prompt_token_bound(3000) > 1000


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"model": 5}, "model"),
        ({"messages": []}, "messages"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"stop_sequences": ["a", ""]}, "stop_sequences[1]"),
        ({"metadata": {"user_id": 5}}, "metadata.user_id"),
        ({"metadata": {"session": "x"}}, "metadata.session"),
        ({"thinking": {"type": "enabled", "budget_tokens": 512}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 100}, "max_tokens": 1000}, "thinking.budget_tokens"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        ({"system": [{"type": "image"}]}, "system[0].type"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}, "messages[0].content[0].text"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}
                ]
            },
            "messages[0].content[0].source.url",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}]}]},
            "messages[0].content[0].source.media_type",
        ),
        (
            {"messages": [*USER, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope"}]}]},
            "messages[1].content[0].tool_use_id",
        ),
        (
            {"messages": [*USER, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f"}]}]},
            "messages[1].content[0].input",
        ),
        (
            {"messages": [*USER, {"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]}]},
            "messages[1].content[0].signature",
        ),
        ({"tools": [{"name": "bad name", "input_schema": {}}]}, "tools[0].name"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tool_choice": {"type": "any"}}, "tool_choice.type"),
        (
            {"tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "tool", "name": "g"}},
            "tool_choice.name",
        ),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_validation_names_the_anthropic_path(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        parse_messages_request(body(**extra))
    assert error.value.param == param
    assert param.split(".")[0].split("[")[0] in error.value.message


def test_duplicate_tool_use_ids_are_refused() -> None:
    call = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    history = [*USER, {"role": "assistant", "content": [call]}, *USER, {"role": "assistant", "content": [call]}]
    with pytest.raises(InvalidRequest) as error:
        parse_messages_request(body(messages=history))
    assert error.value.param == "messages[3].content[0].id"


def _result(data: dict[str, Any]) -> tuple[ChatResult, Usage]:
    thinking = tuple(data["thinking"])
    return ChatResult(data["body"], None, thinking, data["stop_sequence"]), Usage(**data["usage"])


@pytest.mark.parametrize("case", ["message_thinking_tool", "message_openai_reasoning", "message_stop_sequence"])
def test_message(case: str) -> None:
    result, usage = _result(load("messages", case)["input"])
    message = MESSAGES.completion(parse_messages_request(body()), result, usage, 1_234)
    assert message["id"].startswith("msg_") and len(message["id"]) == 28
    anthropic.types.Message.model_validate(message)
    check("messages", case, {**message, "id": "msg_X"})


@pytest.mark.parametrize("case", ["stream_thinking_text_tool", "stream_stop_sequence"])
def test_stream(case: str) -> None:
    data = load("messages", case)["input"]
    shaper = MESSAGES.chunks(parse_messages_request(body(stream=True)))
    events = shaper.opening()
    for chunk in data["chunks"]:
        usage = Usage(**chunk["usage"]) if chunk.get("usage") else None
        extra = {k: chunk[k] for k in ("signature", "redacted_thinking", "stop_sequence") if k in chunk}
        events += shaper.shape(StreamChunk(chunk["chunk"], usage, **extra))
    events += shaper.closing(Usage(**data["usage"]), 1_234)
    for event in events:
        if event["type"] != "ping":
            EVENTS.validate_python(event)
    events[0]["message"]["id"] = "msg_X"
    check("messages", case, events)


def test_stop_reasons() -> None:
    assert [stop_reason(f, None) for f in ("stop", "length", "tool_calls", "content_filter", None)] == [
        "end_turn",
        "max_tokens",
        "tool_use",
        "refusal",
        "end_turn",
    ]
    assert stop_reason("stop", "END") == "stop_sequence"


def test_usage_splits_the_prompt_into_anthropics_three_counts() -> None:
    usage = Usage(prompt_tokens=1200, completion_tokens=300, cached_tokens=200, cache_write_tokens=100)
    assert usage_json(usage) == {
        "input_tokens": 900,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 200,
        "output_tokens": 300,
    }


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvalidRequest("bad", "x"), "invalid_request_error"),
        (AuthenticationError(), "authentication_error"),
        (BudgetExhausted("no money"), "billing_error"),
        (ModelNotFound("gone"), "not_found_error"),
        (RequestTooLarge("big"), "request_too_large"),
        (RateLimited("slow down", 2), "rate_limit_error"),
        (UpstreamError("broke"), "api_error"),
        (UpstreamTimeout("late"), "timeout_error"),
        (ProviderUnavailable("open", 3), "overloaded_error"),
    ],
)
def test_errors_use_anthropics_envelope(error: Any, kind: str) -> None:
    rendered = error_body(error, "req_1")
    assert rendered == {"type": "error", "error": {"type": kind, "message": error.message}, "request_id": "req_1"}
    if kind != "request_too_large":  # Anthropic documents it for 413; the SDK's union does not list it
        ERROR_RESPONSE.validate_python(orjson.loads(orjson.dumps(rendered)))


def test_a_call_id_repeated_on_every_delta_stays_one_tool_use_block() -> None:
    """Some OpenAI-compatible servers repeat ``id`` (and ``name``) on every delta of the same call."""
    shaper = MESSAGES.chunks(parse_messages_request(body(stream=True)))
    events: list[dict[str, Any]] = []
    for piece in ('{"a":', "1}"):
        call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": piece}}
        choice = {"index": 0, "delta": {"tool_calls": [call]}, "logprobs": None, "finish_reason": None}
        events += shaper.shape(StreamChunk({"choices": [choice]}, None))
    assert [e["type"] for e in events] == ["content_block_start", "content_block_delta", "content_block_delta"]
    assert {e["index"] for e in events} == {0}


@pytest.mark.parametrize(
    ("canonical", "anthropic_path"),
    [
        ("messages[2].content[1].image_url.url", "messages[0].content[1].source"),
        ("messages[2].content[0].image_url", "messages[0].content[0].source"),
        ("messages[5].content[0].text", "messages[2].content[1].text"),
        ("messages[4].content", "messages[2].content[0].content"),
        ("messages[3].tool_calls[0].function.arguments", "messages[1].tool_calls[0].function.arguments"),
        ("messages[0].content", "system[0].content"),
        ("messages[99].content", "messages[99].content"),
        ("temperature", "temperature"),
    ],
)
def test_errors_after_translation_name_the_anthropic_path(canonical: str, anthropic_path: str) -> None:
    source = load("messages", "request_full")["input"]
    error = in_anthropic_terms(InvalidRequest(f"Bad part at {canonical}.", canonical), source)
    assert (error.param, error.message) == (anthropic_path, f"Bad part at {anthropic_path}.")
