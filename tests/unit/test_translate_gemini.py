"""Gemini translation (SPEC §7.4) against golden fixtures (tests/unit/fixtures/gemini); the request parts are checked
with the official ``google-genai`` SDK's types and the fixture responses with its GenerateContentResponse."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import orjson
import pytest
from google.genai import types

from tests.unit.golden import check, load, request, usage_json
from tests.unit.test_translate_openai import feed_all
from tollway.domain.messages_request import parse_messages_request
from tollway.errors import ContextLengthExceeded, UpstreamError
from tollway.providers.gemini import translate, wire
from tollway.providers.gemini.events import EventTranslator

USER = [{"role": "user", "content": "hi"}]
TOOL = [{"type": "function", "function": {"name": "f"}}]


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"call_test{next(counter)}"


def test_request_payload() -> None:
    payload = translate.build_payload(request(load("gemini", "request_full")["input"]), 300)
    for content in payload["contents"]:
        types.Content.model_validate(content)
    types.Content.model_validate(payload["systemInstruction"])
    types.Tool.model_validate(payload["tools"][0])
    types.ToolConfig.model_validate(payload["toolConfig"])
    types.GenerationConfig.model_validate(payload["generationConfig"])
    assert set(payload) == {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}
    check("gemini", "request_full", payload)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        ({"type": "function", "function": {"name": "f"}}, {"mode": "ANY", "allowedFunctionNames": ["f"]}),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = {"model": "m", "messages": USER, "tools": TOOL, "tool_choice": choice}
    assert translate.build_payload(request(body), 9)["toolConfig"] == {"functionCallingConfig": expected}


def test_json_object_and_defaults() -> None:
    body = {"model": "m", "messages": USER, "response_format": {"type": "json_object"}, "parallel_tool_calls": False}
    payload = translate.build_payload(request(body), 9)
    assert payload["generationConfig"] == {"maxOutputTokens": 9, "responseMimeType": "application/json"}
    assert payload["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    text_format = {"model": "m", "messages": USER, "response_format": {"type": "text"}}
    assert translate.build_payload(request(text_format), 9)["generationConfig"] == {"maxOutputTokens": 9}


def test_model_path_keeps_the_name_one_segment() -> None:
    assert wire.model_path("gemini-2.5-flash", False) == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert wire.model_path("fake/echo?x=1", True) == "/v1beta/models/fake%2Fecho%3Fx%3D1:streamGenerateContent?alt=sse"


@pytest.mark.parametrize(
    "case", ["response_candidates", "response_function_call", "response_blocked", "response_safety"]
)
def test_response(case: str) -> None:
    raw = load("gemini", case)["input"]
    types.GenerateContentResponse.model_validate(raw)
    result = translate.completion_result(raw, "p", ids())
    check("gemini", case, {"body": result.body, "usage": usage_json(result.usage)})


@pytest.mark.parametrize("case", ["stream_text", "stream_function_call"])
def test_stream(case: str) -> None:
    events = load("gemini", case)["input"]
    for event in events:
        types.GenerateContentResponse.model_validate(event)
    check("gemini", case, feed_all(EventTranslator("p", ids()), events))


def test_stream_cut_before_a_finish_reason_and_error_events() -> None:
    translator = EventTranslator("p")
    chunks = translator.feed(
        orjson.dumps(
            {"candidates": [{"content": {"parts": [{"text": "a"}]}}], "usageMetadata": {"promptTokenCount": 3}}
        )
    )
    assert chunks[0].usage is None  # an interim count is never billed
    with pytest.raises(UpstreamError, match="ended the stream early"):
        translator.end()
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    with pytest.raises(UpstreamError, match="UNAVAILABLE: The model is overloaded") as err:
        EventTranslator("p").feed(orjson.dumps(error))
    assert err.value.upstream_status == 503
    with pytest.raises(ContextLengthExceeded, match="reported an error mid-stream: INVALID_ARGUMENT: The input"):
        EventTranslator("p").feed(orjson.dumps(load("gemini", "errors")["input"][0]))


def test_generated_call_ids() -> None:
    call_id = translate.new_call_id()
    assert call_id.startswith("call_") and len(call_id) == 29 and call_id[5:].isalnum()


@pytest.mark.parametrize(
    ("reason", "called", "finish"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
        ("OTHER", False, "stop"),
    ],
)
def test_finish_reasons(reason: str, called: bool, finish: str) -> None:
    assert translate.finish_reason(reason, called) == finish


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"promptTokenCount": 5, "totalTokenCount": 5}, (5, 0, 0, None)),
        ({"promptTokenCount": 5, "candidatesTokenCount": 2, "thoughtsTokenCount": 3}, (5, 5, 0, 3)),
        ({"promptTokenCount": 5, "candidatesTokenCount": 2, "cachedContentTokenCount": 4}, (5, 2, 4, None)),
        ({"promptTokenCount": -5}, None),
        ({}, None),
    ],
)
def test_usage(usage: dict[str, Any], expected: tuple[int, int, int, int | None] | None) -> None:
    parsed = translate.parse_usage(usage)
    got = (
        None
        if parsed is None
        else (parsed.prompt_tokens, parsed.completion_tokens, parsed.cached_tokens, parsed.reasoning_tokens)
    )
    assert got == expected


def test_read_error_shapes() -> None:
    """The token-count refusal is a context-length one; a BadRequest field violation names the parameter (SPEC §3)."""
    check("gemini", "errors", [asdict(translate.read_error(body)) for body in load("gemini", "errors")["input"]])


def test_messages_top_k_and_thinking_budget_become_generation_config() -> None:
    """/v1/messages (SPEC §19): ``top_k`` -> ``topK``; an enabled thinking budget -> ``thinkingConfig`` with the
    thoughts shown, kept below the effective output limit; other thinking types and chat requests add nothing."""
    body: dict[str, Any] = {"model": "m", "max_tokens": 4096, "messages": [{"role": "user", "content": "hi"}]}
    thinking = {"type": "enabled", "budget_tokens": 2048}
    config = translate.build_payload(parse_messages_request({**body, "top_k": 5, "thinking": thinking}), 4096)
    assert config["generationConfig"] == {
        "maxOutputTokens": 4096,
        "topK": 5,
        "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
    }
    clamped = translate.build_payload(parse_messages_request({**body, "thinking": thinking}), 1500)
    assert clamped["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 1499
    adaptive = translate.build_payload(parse_messages_request({**body, "thinking": {"type": "adaptive"}}), 4096)
    assert adaptive["generationConfig"] == {"maxOutputTokens": 4096}
