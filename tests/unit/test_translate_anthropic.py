"""Anthropic translation (SPEC §7.4) against golden fixtures (tests/unit/fixtures/anthropic); the fixture responses
and events are checked with the official ``anthropic`` SDK's types first, so they cannot drift from the API."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import anthropic.types
import orjson
import pytest
from pydantic import TypeAdapter

from tests.unit.golden import check, load, request, usage_json
from tests.unit.test_translate_openai import feed_all
from tollway.errors import ContextLengthExceeded, UpstreamError, UpstreamInvalidRequest
from tollway.providers.anthropic import translate
from tollway.providers.anthropic.events import EventTranslator
from tollway.providers.base import InvalidForProvider

USER = [{"role": "user", "content": "hi"}]
TOOL = [{"type": "function", "function": {"name": "f"}}]


def test_request_payload() -> None:
    payload = translate.build_payload(request(load("anthropic", "request_full")["input"]), "claude-x", 300)
    check("anthropic", "request_full", payload)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, None),
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        ({"parallel_tool_calls": True}, None),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, {"type": "tool", "name": "f"}),
    ],
)
def test_tool_choice(extra: dict[str, Any], expected: dict[str, Any] | None) -> None:
    payload = translate.build_payload(request({"model": "m", "messages": USER, "tools": TOOL, **extra}), "c", 10)
    assert payload.get("tool_choice") == expected
    assert payload["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]


def test_images_as_base64_or_url_sources() -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "text", "text": ""},
    ]
    payload = translate.build_payload(request({"model": "m", "messages": [{"role": "user", "content": parts}]}), "c", 5)
    assert payload["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]


def test_non_object_arguments_cannot_be_translated() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
    body = {"model": "m", "messages": [*USER, {"role": "assistant", "content": None, "tool_calls": [call]}]}
    with pytest.raises(InvalidForProvider) as err:
        translate.build_payload(request(body), "c", 5)
    assert (err.value.code, err.value.param) == ("invalid_request", "messages[1].tool_calls[0].function.arguments")


@pytest.mark.parametrize("case", ["response_text", "response_tool_use", "response_refusal"])
def test_response(case: str) -> None:
    raw = load("anthropic", case)["input"]
    anthropic.types.Message.model_validate(raw)
    result = translate.completion_result(raw, "p")
    check("anthropic", case, {"body": result.body, "usage": usage_json(result.usage)})


def test_stream_events() -> None:
    events = load("anthropic", "stream_thinking_tool")["input"]
    adapter: TypeAdapter[Any] = TypeAdapter(anthropic.types.RawMessageStreamEvent)
    for event in events:
        if event["type"] != "ping":
            adapter.validate_python(event)
    check("anthropic", "stream_thinking_tool", feed_all(EventTranslator("p"), events))


def test_stream_error_event_carries_the_status_it_stands_for() -> None:
    translator = EventTranslator("p")
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamError, match="overloaded_error: Overloaded") as err:
        translator.feed(orjson.dumps(error))
    assert err.value.upstream_status == 529
    too_long = {"type": "error", "error": load("anthropic", "errors")["input"][0]["error"]}
    with pytest.raises(ContextLengthExceeded) as refused:
        EventTranslator("p").feed(orjson.dumps(too_long))
    assert (refused.value.status, refused.value.upstream_status) == (400, 400)
    field = {"type": "error", "error": {"type": "invalid_request_error", "message": "top_k: must be positive"}}
    with pytest.raises(UpstreamInvalidRequest) as invalid:
        EventTranslator("p").feed(orjson.dumps(field))
    assert (invalid.value.code, invalid.value.param) == ("upstream_invalid_request", "top_k")


def test_stream_without_message_stop_is_cut() -> None:
    translator = EventTranslator("p")
    translator.feed(b'{"type": "ping"}')
    with pytest.raises(UpstreamError, match="ended the stream early"):
        translator.end()


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
        ("something_new", "stop"),
    ],
)
def test_finish_reasons(stop_reason: str | None, finish: str) -> None:
    assert translate.finish_reason(stop_reason) == finish


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"input_tokens": 10, "output_tokens": 2}, (10, 2, 0, 0)),
        (
            {"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 1},
            (16, 2, 5, 1),
        ),
        ({"input_tokens": 10, "output_tokens": 2, "cache_creation_input_tokens": None}, (10, 2, 0, 0)),
        ({"input_tokens": 10}, None),
        ({"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": -1}, None),
        ({"input_tokens": 10, "output_tokens": 2, "cache_creation_input_tokens": "4"}, None),
    ],
)
def test_usage(usage: dict[str, Any], expected: tuple[int, int, int, int] | None) -> None:
    """SPEC §7.4: prompt = input + cache reads + cache writes; cached = reads; the writes kept for §19's price."""
    parsed = translate.parse_usage(usage)
    assert (
        None
        if parsed is None
        else (parsed.prompt_tokens, parsed.completion_tokens, parsed.cached_tokens, parsed.cache_write_tokens)
    ) == expected


def test_read_error_shapes() -> None:
    """ "prompt is too long" is a context-length refusal; a ``field.path: `` prefix names the parameter (SPEC §3)."""
    check("anthropic", "errors", [asdict(translate.read_error(body)) for body in load("anthropic", "errors")["input"]])


def test_thinking_blocks_signatures_and_the_stop_sequence_ride_beside_the_answer() -> None:
    raw = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "sig-1"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "One, two"},
        ],
        "stop_reason": "stop_sequence",
        "stop_sequence": "three",
        "usage": {"input_tokens": 5, "output_tokens": 3, "cache_creation_input_tokens": 7},
    }
    anthropic.types.Message.model_validate(raw)
    result = translate.completion_result(raw, "p")
    assert result.thinking == (
        {"type": "thinking", "thinking": "Hmm.", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "opaque"},
    )
    assert result.stop_sequence == "three"
    assert result.body["choices"][0]["message"]["reasoning_content"] == "Hmm."
    assert result.usage is not None and (result.usage.prompt_tokens, result.usage.cache_write_tokens) == (12, 7)
    assert translate.completion_result({**raw, "stop_reason": "end_turn"}, "p").stop_sequence is None


def test_stream_redacted_thinking_and_stop_sequence() -> None:
    translator = EventTranslator("p")
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "redacted_thinking", "data": "x"}}
    (redacted,) = translator.feed(orjson.dumps(start))
    assert (redacted.chunk, redacted.redacted_thinking) == ({"choices": []}, "x")
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
        "usage": {"output_tokens": 2},
    }
    (finish,) = translator.feed(orjson.dumps(delta))
    assert finish.stop_sequence == "END" and finish.chunk["choices"][0]["finish_reason"] == "stop"
