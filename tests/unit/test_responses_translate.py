"""Translation for the Responses API (SPEC §7.6): the chat form for chat-only providers, the native payload for
``openai`` providers and its answers read back, and the response.* event sequence, each checked against the
official SDK's strict pydantic types (``openai.types.responses``)."""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from tollway.domain.chat_request import parse_chat_request
from tollway.domain.pricing import Usage
from tollway.domain.responses_chat import chat_body
from tollway.domain.responses_output import ResponseEventStream, output_of_choice
from tollway.domain.responses_request import parse_responses_request
from tollway.errors import UnsupportedParameter, UpstreamError
from tollway.fake_upstream.openai_responses import ResponsesDialect
from tollway.fake_upstream.responses import Envelope, build_completion
from tollway.fake_upstream.scenarios import parse_model
from tollway.providers.openai.responses import EventTranslator, native_input, normalise_response
from tollway.services.inference.responses import _renamed

EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
ITEMS: list[dict[str, Any]] = [
    {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "Look "}, {"type": "input_text", "text": "here"}
    ]},
    {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "and"}, {"type": "input_image", "image_url": "https://example.com/a.png"}
    ]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Calling."}]},
    {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
    {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
    {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    {"type": "function_call_output", "call_id": "c2", "output": "rain"},
]  # fmt: skip


def _request(**fields: Any) -> Any:
    return parse_responses_request({"model": "m", "input": ITEMS, **fields})


def _skeleton() -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "in_progress",
        "model": "m",
        "output": [],
        "usage": None,
        "previous_response_id": None,
        "incomplete_details": None,
        "error": None,
        "metadata": {},
        "instructions": None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "temperature": None,
        "top_p": None,
    }


def _sdk_strict(event: dict[str, Any]) -> dict[str, Any]:
    """The event as the SDK's strict model wants it: this SDK also requires ``cache_write_tokens``, which SPEC §7.6
    does not list in our usage (the SDK's own parser does not validate, so clients never miss it)."""
    usage = event.get("response", {}).get("usage")
    if usage is None:
        return event
    details = {**usage["input_tokens_details"], "cache_write_tokens": 0}
    return {**event, "response": {**event["response"], "usage": {**usage, "input_tokens_details": details}}}


def test_chat_form_of_a_conversation() -> None:
    request = _request(
        instructions="Be brief.",
        tools=[TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=64,
        text={"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        reasoning={"effort": "low"},
        metadata={"a": "b"},
    )
    body = chat_body(request, request.input)
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Look here"},
        {"role": "user", "content": [
            {"type": "text", "text": "and"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
        ]},
        {"role": "assistant", "content": "Calling.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
    ]  # fmt: skip
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object"}},
    }
    assert (body["max_completion_tokens"], body["reasoning_effort"], body["metadata"]) == (64, "low", {"a": "b"})
    chat = parse_chat_request(body)  # the chat form is itself a valid chat request
    assert (chat.output_limit, chat.metadata, chat.n) == (64, {"a": "b"}, 1)


def test_native_input_sends_assistant_text_as_a_string() -> None:
    native = native_input(_request().input)
    assert native[0]["content"] == [{"type": "input_text", "text": "Look "}, {"type": "input_text", "text": "here"}]
    assert native[1]["content"][1] == {
        "type": "input_image",
        "image_url": "https://example.com/a.png",
        "detail": "auto",
    }
    assert native[2] == {"type": "message", "role": "assistant", "content": "Calling."}
    assert native[3:] == ITEMS[3:]


def test_native_answer_read_back_into_a_chat_choice() -> None:
    envelope = Envelope("x", 1, "gpt", 7)
    dialect = ResponsesDialect()
    tool = build_completion(parse_model('tool-call?name=f&args={"a":1}&in=3&out=4'), {"messages": []})
    result = normalise_response(orjson.loads(dialect.render_completion(tool, envelope)), "p")
    (choice,) = result.body["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "call_fake_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    ]
    assert result.usage == Usage(3, 4, 0, 0)
    words = build_completion(parse_model("words?n=5"), {"messages": [], "max_tokens": 2})
    result = normalise_response(orjson.loads(dialect.render_completion(words, envelope)), "p")
    assert result.body["choices"][0]["finish_reason"] == "length"
    assert result.body["choices"][0]["message"]["content"] == "w1 w2"
    with pytest.raises(UpstreamError):
        normalise_response({"status": "failed", "error": {"message": "boom"}, "output": []}, "p")


def test_fake_responses_validate_against_the_sdk_types() -> None:
    dialect = ResponsesDialect()
    envelope = Envelope("x", 1, "gpt", 7)
    for model in ("echo?thought=hm", "tool-call?name=f", "words?n=3"):
        completion = build_completion(parse_model(model), {"messages": [{"role": "user", "content": "hi"}]})
        Response.model_validate_json(dialect.render_completion(completion, envelope))
        events = dialect.render_stream(completion, envelope, include_usage=True, cut_after=None)
        for raw in events:
            name, data = raw.decode().strip().split("\n")
            assert EVENT.validate_json(data.removeprefix("data: ")).type == name.removeprefix("event: ")


def test_native_stream_events_become_hub_chunks() -> None:
    dialect = ResponsesDialect()
    envelope = Envelope("x", 1, "gpt", 7)
    translator = EventTranslator("p")
    completion = build_completion(parse_model('tool-call?name=f&args={"city":"Paris"}&in=2&out=3'), {"messages": []})
    chunks = []
    for raw in dialect.render_stream(completion, envelope, include_usage=True, cut_after=None):
        chunks += translator.feed(raw.split(b"data: ", 1)[1].strip())
    assert translator.finished
    deltas = [c.chunk["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["tool_calls"][0] == {
        "index": 0,
        "id": "call_fake_1",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    assert "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[1:-1]) == '{"city":"Paris"}'
    assert chunks[-1].chunk["choices"][0]["finish_reason"] == "tool_calls" and chunks[-1].usage == Usage(2, 3, 0, 0)
    cut = EventTranslator("p")
    for raw in dialect.render_stream(completion, envelope, include_usage=True, cut_after=1):
        cut.feed(raw.split(b"data: ", 1)[1].strip())
    with pytest.raises(UpstreamError):
        cut.end()


def test_event_stream_sequence_validates_and_accumulates() -> None:
    writer = ResponseEventStream(_skeleton())
    events = writer.opening()
    events += writer.feed({"role": "assistant", "content": ""})
    events += writer.feed({"content": "Hel"})
    events += writer.feed({"content": "lo", "reasoning_content": "hm"})
    events += writer.feed(
        {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}
    )
    events += writer.feed({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})
    events += writer.finish("tool_calls", Usage(5, 6, 1, 2))
    parsed = [EVENT.validate_python(_sdk_strict(event)) for event in events]
    assert [e.sequence_number for e in parsed] == list(range(len(events)))
    assert [e.type for e in parsed] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = parsed[-1].response  # type: ignore[union-attr]
    assert final.output_text == "Hello" and final.output[1].arguments == "{}"  # type: ignore[union-attr]
    assert events[-1]["response"]["usage"] == {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 1},
        "output_tokens": 6,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 11,
    }
    assert writer.delivered_bytes == len("Hello") + len("hm") + len("f") + len("{}")


def test_event_stream_incomplete_and_failed() -> None:
    writer = ResponseEventStream(_skeleton())
    writer.opening()
    writer.feed({"content": "abc"})
    (terminal,) = [e for e in writer.finish("length", Usage(1, 1)) if e["type"].startswith("response.i")]
    assert terminal["type"] == "response.incomplete"
    assert terminal["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert terminal["response"]["output"][0]["status"] == "incomplete"
    failing = ResponseEventStream(_skeleton())
    failing.opening()
    failing.feed({"content": "abc"})
    (failed,) = failing.fail("upstream_error", "broke")
    parsed = EVENT.validate_python(
        {**failed, "response": {**failed["response"], "error": {"code": "server_error", "message": "broke"}}}
    )
    assert parsed.type == "response.failed" and failed["response"]["error"]["code"] == "upstream_error"


def test_chat_choice_becomes_output_items() -> None:
    choice = {
        "message": {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [{"id": "c9", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        "finish_reason": "tool_calls",
    }
    output, status, incomplete = output_of_choice(choice)
    assert (status, incomplete) == ("completed", None)
    assert [item["type"] for item in output] == ["message", "function_call"]
    assert output[1]["call_id"] == "c9" and output[1]["id"].startswith("fc_")
    Response.model_validate({**_skeleton(), "status": status, "output": output})
    _, status, incomplete = output_of_choice({"message": {"content": "x"}, "finish_reason": "content_filter"})
    assert (status, incomplete) == ("incomplete", {"reason": "content_filter"})


@pytest.mark.parametrize(
    ("chat_param", "fields", "expected"),
    [
        ("response_format", {}, "text.format"),
        ("response_format", {"response_format": {"type": "json_object"}}, "response_format"),
        ("reasoning_effort", {}, "reasoning.effort"),
        ("max_tokens", {}, "max_output_tokens"),
        ("messages[3].tool_calls[0].function.arguments", {}, "input"),
        ("tools[0].function.name", {}, "tools[0].name"),
        ("tool_choice.function.name", {}, "tool_choice.name"),
        ("temperature", {}, "temperature"),
    ],
)
def test_errors_on_the_chat_form_name_the_responses_field(
    chat_param: str, fields: dict[str, Any], expected: str
) -> None:
    request = parse_responses_request({"model": "m", "input": "x", **fields})
    error = _renamed(UnsupportedParameter(f"The parameter '{chat_param}' is not supported.", chat_param), request)
    assert error.param == expected and error.message == f"The parameter '{expected}' is not supported."
