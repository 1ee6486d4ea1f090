"""Chat completion request validation (SPEC §7.2) and the prompt bound (SPEC §9.3).

Each rule has a bad input that must fail with 400 at an exact JSON path; good inputs include the shapes the
official openai SDK sends, captured from the SDK itself."""

from __future__ import annotations

import copy
import dataclasses
import http.server
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import openai
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.domain.chat_request import parse_chat_request
from tollway.errors import InvalidRequest
from tollway.http.jsonbody import parse_json_body

PNG = "data:image/png;base64,iVBORw0KGgo="
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
}
CALL: dict[str, Any] = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}


def body(**fields: Any) -> dict[str, Any]:
    """A minimal valid body with ``fields`` set; a value of ``...`` removes the field."""
    out: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
    out.update(copy.deepcopy(fields))
    return {key: value for key, value in out.items() if value is not ...}


def conversation(*messages: Any, **fields: Any) -> dict[str, Any]:
    return body(messages=list(messages), **fields)


def user(content: Any, **fields: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **fields}


def assistant(content: Any = "Hi.", **fields: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **fields}


def tool_reply(call_id: Any = "call_1", content: Any = "18C", **fields: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content, **fields}


def image(url: str = PNG, **fields: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **fields}}


def reject(payload: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(payload)
    error = info.value
    assert (error.status, error.code, error.type) == (400, "invalid_request", "invalid_request_error")
    assert error.message.endswith("."), error.message
    assert error.param is not None
    return error


# ---- accepted requests


def test_minimal_request_and_defaults() -> None:
    request = parse_chat_request(body())
    assert request.model == "gpt-4o-mini"
    assert request.messages == [{"role": "user", "content": "Hello"}]
    assert (request.n, request.stream, request.include_usage, request.output_limit) == (1, False, False, None)
    assert (request.stop, request.tools, request.tool_names, request.metadata) == ((), [], (), {})
    assert request.tool_choice is None
    assert request.has_tools is False
    assert request.logprobs is False
    assert request.temperature is None
    assert request.image_messages == ()


def test_request_is_frozen_and_keeps_the_body() -> None:
    payload = body(temperature=0.5)
    request = parse_chat_request(payload)
    assert request.body is payload
    assert request.messages is payload["messages"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.model = "other"  # type: ignore[misc]


def test_every_field_at_once() -> None:
    payload = conversation(
        {"role": "system", "content": "Be brief.", "name": "rules"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        user(
            [
                {"type": "text", "text": "What is in this image?"},
                image("https://example.com/cat.png", detail="high"),
                image(PNG, detail="low"),
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-abc"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "a.pdf"}},
            ],
            name="alice",
        ),
        assistant(None, tool_calls=[CALL], refusal=None),
        tool_reply(content=[{"type": "text", "text": "18C"}]),
        assistant([{"type": "text", "text": "It is 18C."}, {"type": "refusal", "refusal": "No more."}]),
        assistant("Echo.", audio={"id": "audio_1"}, name="bot"),
        user("Thanks"),
        temperature=1.2,
        top_p=0.9,
        frequency_penalty=-2,
        presence_penalty=2.0,
        n=8,
        stop=["END", "STOP", "\n\n", "###"],
        max_tokens=300,
        max_completion_tokens=300,
        stream=True,
        stream_options={"include_usage": True},
        tools=[TOOL, {"type": "function", "function": {"name": "search-web_2"}}],
        tool_choice={"type": "function", "function": {"name": "search-web_2"}},
        parallel_tool_calls=False,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "description": "d", "schema": {"type": "object"}, "strict": True},
        },
        seed=-(2**63),
        user="user-1234",
        logprobs=True,
        top_logprobs=20,
        logit_bias={"50256": -100, "1234": 100, "7": 0.5},
        reasoning_effort="minimal",
        metadata={f"k{i}": "v" * 512 for i in range(16)},
        agent_address="agent1qxyz",
        web_search=True,
        planner_mode=False,
        study_mode=True,
        store=True,
        service_tier="flex",
        verbosity="low",
        prompt_cache_key="k" * 256,
        safety_identifier="s" * 256,
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
        prediction={"type": "content", "content": "x"},
        web_search_options={"search_context_size": "low"},
    )
    request = parse_chat_request(payload)
    assert request.stream is True
    assert request.include_usage is True
    assert request.n == 8
    assert request.output_limit == 300
    assert (request.max_tokens, request.max_completion_tokens) == (300, 300)
    assert request.stop == ("END", "STOP", "\n\n", "###")
    assert request.tool_names == ("get_weather", "search-web_2")
    assert request.has_tools is True
    assert (request.tool_choice, request.tool_choice_name) == ("function", "search-web_2")
    assert request.parallel_tool_calls is False
    assert request.response_format == payload["response_format"]
    assert request.seed == -(2**63)
    assert (request.logprobs, request.top_logprobs) == (True, 20)
    assert request.logit_bias == {"50256": -100, "1234": 100, "7": 0.5}
    assert request.reasoning_effort == "minimal"
    assert len(request.metadata) == 16
    assert (request.web_search, request.planner_mode, request.study_mode) == (True, False, True)
    assert (request.service_tier, request.verbosity) == ("flex", "low")
    assert request.modalities == ["text", "audio"]
    assert request.image_messages == (2,)
    assert request.temperature == 1.2
    assert request.frequency_penalty == -2


def test_null_optional_fields_count_as_absent() -> None:
    nullable = [
        "temperature", "top_p", "frequency_penalty", "presence_penalty", "n", "stop", "max_tokens",
        "max_completion_tokens", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls",
        "response_format", "seed", "user", "logprobs", "top_logprobs", "logit_bias", "reasoning_effort", "metadata",
        "agent_address", "web_search", "planner_mode", "study_mode", "store", "service_tier", "verbosity",
        "prompt_cache_key", "safety_identifier", "modalities", "audio", "prediction", "web_search_options",
    ]  # fmt: skip
    request = parse_chat_request(body(**dict.fromkeys(nullable)))
    assert request.n == 1
    assert request.stream is False
    assert request.metadata == {}
    assert request.stop == ()
    messages = [
        user("hi", name=None),
        assistant(None, tool_calls=[CALL], refusal=None, audio=None, name=None),
        tool_reply(name=None),
        assistant("ok", tool_calls=None),
    ]
    parse_chat_request(conversation(*messages, tools=[TOOL], tool_choice=None))


@pytest.mark.parametrize(
    ("fields", "output_limit"),
    [
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 100}, 100),
        ({"max_tokens": 100, "max_completion_tokens": 100}, 100),
        ({"max_tokens": 0}, None),
        ({"max_tokens": 0, "max_completion_tokens": 50}, 50),  # 0 means absent, so only one is given
        ({"max_tokens": 70, "max_completion_tokens": 0}, 70),
        ({"max_tokens": 0, "max_completion_tokens": 0}, None),
    ],
)
def test_output_limit(fields: dict[str, Any], output_limit: int | None) -> None:
    assert parse_chat_request(body(**fields)).output_limit == output_limit


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": 0},
        {"temperature": 2},
        {"temperature": 0.0},
        {"top_p": 1},
        {"frequency_penalty": -2.0},
        {"presence_penalty": 2},
        {"n": 1},
        {"stop": "x"},
        {"stop": ["a"]},
        {"seed": 2**63 - 1},
        {"seed": 0},
        {"user": "u" * 256},
        {"top_logprobs": 0, "logprobs": True},
        {"logit_bias": {}},
        {"logit_bias": {str(i): 1 for i in range(300)}},
        {"metadata": {}},
        {"metadata": {"k" * 64: ""}},
        {"tool_choice": "none"},
        {"tools": []},
        {"tools": [TOOL], "tool_choice": "required"},
        {"tools": [TOOL], "tool_choice": "auto"},
        {"tools": [{"type": "function", "function": {"name": f"t{i}"}} for i in range(128)]},
        {"response_format": {"type": "text"}},
        {"response_format": {"type": "json_object"}},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}}},
        {"stream": True, "stream_options": {}},
        {"stream": True, "stream_options": {"include_usage": False}},
        {"stream": False},
        {"reasoning_effort": "none"},
        {"service_tier": "priority"},
        {"modalities": []},
        {"messages": [user("")]},
        {"messages": [user("x")] * 10_000},
        {"messages": [user("x", name="n" * 64)]},
        {"messages": [user([image("HTTPS://example.com/a.png")])]},
        {"messages": [user([image("data:image/svg+xml;base64,PHN2Zz4=")])]},
        {"messages": [user([{"type": "file", "file": {"file_id": "f", "file_data": "d"}}])]},
        {"messages": [{"role": "system", "content": ""}, assistant("x"), user("y")]},
        {"messages": [assistant(tool_calls=[CALL])]},  # content with tool calls
        {"messages": [{"role": "assistant", "tool_calls": [CALL]}]},  # content absent with tool calls
        {"messages": [assistant(tool_calls=[])]},
        {"model": ""},  # a string; an unknown slug is 404 model_not_found later (§8)
    ],
)
def test_accepted(fields: dict[str, Any]) -> None:
    parse_chat_request(body(**fields))


def test_tool_call_conversation() -> None:
    second = {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    payload = conversation(
        user("Weather in Paris and Rome?"),
        assistant(None, tool_calls=[CALL, second]),
        tool_reply("call_2", "20C"),
        tool_reply("call_1", "18C"),
        assistant("Paris 18C, Rome 20C."),
        user("And again?"),
        tool_reply("call_1", "still 18C"),  # any earlier assistant call, not only the previous message
        tools=[TOOL],
        parallel_tool_calls=True,
    )
    request = parse_chat_request(payload)
    assert request.tool_names == ("get_weather",)


# ---- rejected requests: (body, param)

LONG = "x" * 257
BAD: list[tuple[str, dict[str, Any], str]] = [
    # top level
    ("unknown field", body(foo=1), "foo"),
    ("deprecated functions", body(functions=[]), "functions"),
    ("missing model", body(model=...), "model"),
    ("null model", body(model=None), "model"),
    ("model not string", body(model=5), "model"),
    ("missing messages", body(messages=...), "messages"),
    ("null messages", body(messages=None), "messages"),
    ("empty messages", body(messages=[]), "messages"),
    ("messages not array", body(messages={"role": "user"}), "messages"),
    ("too many messages", body(messages=[user("x")] * 10_001), "messages"),
    # messages
    ("message not object", conversation("hi"), "messages[0]"),
    ("missing role", conversation({"content": "x"}), "messages[0].role"),
    ("unknown role", conversation({"role": "bot", "content": "x"}), "messages[0].role"),
    ("function role", conversation({"role": "function", "content": "x", "name": "f"}), "messages[0].role"),
    ("role not string", conversation({"role": ["user"], "content": "x"}), "messages[0].role"),
    ("unknown message field", conversation(user("x", foo=1)), "messages[0].foo"),
    ("tool_call_id on user", conversation(user("x", tool_call_id="c")), "messages[0].tool_call_id"),
    ("tool_calls on user", conversation(user("x", tool_calls=[CALL])), "messages[0].tool_calls"),
    ("refusal on system", conversation({"role": "system", "content": "x", "refusal": "r"}), "messages[0].refusal"),
    ("name too long", conversation(user("x", name="n" * 65)), "messages[0].name"),
    ("name not string", conversation(user("x", name=5)), "messages[0].name"),
    ("user content missing", conversation({"role": "user"}), "messages[0].content"),
    ("user content null", conversation(user(None)), "messages[0].content"),
    ("user content number", conversation(user(5)), "messages[0].content"),
    ("user content empty array", conversation(user([])), "messages[0].content"),
    ("system content missing", conversation({"role": "system"}), "messages[0].content"),
    ("developer content object", conversation({"role": "developer", "content": {}}), "messages[0].content"),
    # parts
    ("part not object", conversation(user(["text"])), "messages[0].content[0]"),
    ("part without type", conversation(user([{"text": "x"}])), "messages[0].content[0].type"),
    ("unknown part type", conversation(user([{"type": "video", "video": {}}])), "messages[0].content[0].type"),
    ("refusal part in user", conversation(user([{"type": "refusal", "refusal": "x"}])), "messages[0].content[0].type"),
    ("text part without text", conversation(user([{"type": "text"}])), "messages[0].content[0].text"),
    ("text part text number", conversation(user([{"type": "text", "text": 1}])), "messages[0].content[0].text"),
    ("text part extra", conversation(user([{"type": "text", "text": "x", "x": 1}])), "messages[0].content[0].x"),
    (
        "cache_control is not ours",
        conversation(user([{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}])),
        "messages[0].content[0].cache_control",
    ),
    (
        "image part in system",
        conversation({"role": "system", "content": [image()]}),
        "messages[0].content[0].type",
    ),
    (
        "image part in tool",
        conversation(assistant(None, tool_calls=[CALL]), tool_reply(content=[image()])),
        "messages[1].content[0].type",
    ),
    (
        "image part in assistant",
        conversation(assistant([image()])),
        "messages[0].content[0].type",
    ),
    ("image_url missing", conversation(user([{"type": "image_url"}])), "messages[0].content[0].image_url"),
    (
        "image_url as string",
        conversation(user([{"type": "image_url", "image_url": PNG}])),
        "messages[0].content[0].image_url",
    ),
    (
        "url missing",
        conversation(user([{"type": "image_url", "image_url": {"detail": "low"}}])),
        "messages[0].content[0].image_url.url",
    ),
    ("http url", conversation(user([image("http://example.com/a.png")])), "messages[0].content[0].image_url.url"),
    ("bare https", conversation(user([image("https://")])), "messages[0].content[0].image_url.url"),
    ("ftp url", conversation(user([image("ftp://example.com/a.png")])), "messages[0].content[0].image_url.url"),
    (
        "non-image data url",
        conversation(user([image("data:text/plain;base64,aGk=")])),
        "messages[0].content[0].image_url.url",
    ),
    (
        "data url not base64",
        conversation(user([image("data:image/png,rawbytes")])),
        "messages[0].content[0].image_url.url",
    ),
    (
        "data url without payload",
        conversation(user([image("data:image/png;base64,")])),
        "messages[0].content[0].image_url.url",
    ),
    (
        "bad detail",
        conversation(user([image(detail="ultra")])),
        "messages[0].content[0].image_url.detail",
    ),
    ("image_url extra", conversation(user([image(size=1)])), "messages[0].content[0].image_url.size"),
    (
        "image part extra",
        conversation(user([{**image(), "detail": "low"}])),
        "messages[0].content[0].detail",
    ),
    (
        "audio format",
        conversation(user([{"type": "input_audio", "input_audio": {"data": "x", "format": "ogg"}}])),
        "messages[0].content[0].input_audio.format",
    ),
    (
        "audio data missing",
        conversation(user([{"type": "input_audio", "input_audio": {"format": "mp3"}}])),
        "messages[0].content[0].input_audio.data",
    ),
    (
        "audio extra",
        conversation(user([{"type": "input_audio", "input_audio": {"data": "x", "format": "mp3", "rate": 1}}])),
        "messages[0].content[0].input_audio.rate",
    ),
    ("input_audio missing", conversation(user([{"type": "input_audio"}])), "messages[0].content[0].input_audio"),
    (
        "file without data or id",
        conversation(user([{"type": "file", "file": {"filename": "a.pdf"}}])),
        "messages[0].content[0].file",
    ),
    (
        "file filename number",
        conversation(user([{"type": "file", "file": {"file_id": "f", "filename": 5}}])),
        "messages[0].content[0].file.filename",
    ),
    (
        "file extra",
        conversation(user([{"type": "file", "file": {"file_id": "f", "url": "u"}}])),
        "messages[0].content[0].file.url",
    ),
    ("file not object", conversation(user([{"type": "file", "file": "f"}])), "messages[0].content[0].file"),
    # assistant messages and tool calls
    ("assistant null content without calls", conversation(assistant(None)), "messages[0].content"),
    ("assistant content missing", conversation({"role": "assistant"}), "messages[0].content"),
    ("assistant null content, empty calls", conversation(assistant(None, tool_calls=[])), "messages[0].content"),
    ("assistant content number", conversation(assistant(3)), "messages[0].content"),
    ("assistant empty content array", conversation(assistant([])), "messages[0].content"),
    (
        "refusal part without refusal",
        conversation(assistant([{"type": "refusal"}])),
        "messages[0].content[0].refusal",
    ),
    ("refusal not string", conversation(assistant("x", refusal=1)), "messages[0].refusal"),
    ("audio not object", conversation(assistant("x", audio="a")), "messages[0].audio"),
    ("audio without id", conversation(assistant("x", audio={})), "messages[0].audio.id"),
    ("audio extra", conversation(assistant("x", audio={"id": "a", "data": "d"})), "messages[0].audio.data"),
    ("function_call is not accepted", conversation(assistant("x", function_call={})), "messages[0].function_call"),
    ("tool_calls not array", conversation(assistant(tool_calls=CALL)), "messages[0].tool_calls"),
    ("tool call not object", conversation(assistant(tool_calls=["c"])), "messages[0].tool_calls[0]"),
    (
        "tool call without id",
        conversation(assistant(tool_calls=[{"type": "function", "function": CALL["function"]}])),
        "messages[0].tool_calls[0].id",
    ),
    ("tool call empty id", conversation(assistant(tool_calls=[{**CALL, "id": ""}])), "messages[0].tool_calls[0].id"),
    (
        "tool call ids repeat in a message",
        conversation(assistant(tool_calls=[CALL, CALL])),
        "messages[0].tool_calls[1].id",
    ),
    (
        "tool call ids repeat in the conversation",
        conversation(assistant(None, tool_calls=[CALL]), tool_reply(), assistant(None, tool_calls=[CALL])),
        "messages[2].tool_calls[0].id",
    ),
    (
        "tool call type",
        conversation(assistant(tool_calls=[{**CALL, "type": "custom"}])),
        "messages[0].tool_calls[0].type",
    ),
    (
        "tool call type missing",
        conversation(assistant(tool_calls=[{"id": "c", "function": CALL["function"]}])),
        "messages[0].tool_calls[0].type",
    ),
    (
        "tool call without function",
        conversation(assistant(tool_calls=[{"id": "c", "type": "function"}])),
        "messages[0].tool_calls[0].function",
    ),
    (
        "tool call function name missing",
        conversation(assistant(tool_calls=[{**CALL, "function": {"arguments": "{}"}}])),
        "messages[0].tool_calls[0].function.name",
    ),
    (
        "tool call arguments object",
        conversation(assistant(tool_calls=[{**CALL, "function": {"name": "f", "arguments": {}}}])),
        "messages[0].tool_calls[0].function.arguments",
    ),
    (
        "tool call arguments missing",
        conversation(assistant(tool_calls=[{**CALL, "function": {"name": "f"}}])),
        "messages[0].tool_calls[0].function.arguments",
    ),
    ("tool call extra", conversation(assistant(tool_calls=[{**CALL, "index": 0}])), "messages[0].tool_calls[0].index"),
    (
        "tool call function extra",
        conversation(assistant(tool_calls=[{**CALL, "function": {**CALL["function"], "x": 1}}])),
        "messages[0].tool_calls[0].function.x",
    ),
    # tool messages
    (
        "tool without call id",
        conversation(assistant(tool_calls=[CALL]), {"role": "tool", "content": "x"}),
        "messages[1].tool_call_id",
    ),
    ("tool call id number", conversation(assistant(tool_calls=[CALL]), tool_reply(5)), "messages[1].tool_call_id"),
    ("tool answers nothing", conversation(user("x"), tool_reply("call_1")), "messages[1].tool_call_id"),
    (
        "tool answers an unknown id",
        conversation(assistant(None, tool_calls=[CALL]), tool_reply("call_9")),
        "messages[1].tool_call_id",
    ),
    (
        "tool answers a later call",
        conversation(user("x"), tool_reply("call_1"), assistant(None, tool_calls=[CALL])),
        "messages[1].tool_call_id",
    ),
    (
        "tool content missing",
        conversation(assistant(tool_calls=[CALL]), tool_reply(content=None)),
        "messages[1].content",
    ),
    ("tool extra", conversation(assistant(tool_calls=[CALL]), tool_reply(x=1)), "messages[1].x"),
    # sampling
    ("temperature high", body(temperature=2.01), "temperature"),
    ("temperature negative", body(temperature=-0.1), "temperature"),
    ("temperature string", body(temperature="1"), "temperature"),
    ("temperature bool", body(temperature=True), "temperature"),
    ("top_p high", body(top_p=1.5), "top_p"),
    ("top_p bool", body(top_p=False), "top_p"),
    ("frequency_penalty low", body(frequency_penalty=-2.5), "frequency_penalty"),
    ("presence_penalty high", body(presence_penalty=3), "presence_penalty"),
    ("n zero", body(n=0), "n"),
    ("n nine", body(n=9), "n"),
    ("n float", body(n=1.0), "n"),
    ("n bool", body(n=True), "n"),
    ("n string", body(n="2"), "n"),
    ("stop empty string", body(stop=""), "stop"),
    ("stop empty array", body(stop=[]), "stop"),
    ("stop five", body(stop=["a", "b", "c", "d", "e"]), "stop"),
    ("stop number", body(stop=5), "stop"),
    ("stop empty item", body(stop=["a", ""]), "stop[1]"),
    ("stop number item", body(stop=["a", 5]), "stop[1]"),
    # output limits
    ("max_tokens negative", body(max_tokens=-1), "max_tokens"),
    ("max_tokens float", body(max_tokens=100.0), "max_tokens"),
    ("max_tokens bool", body(max_tokens=True), "max_tokens"),
    ("max_tokens string", body(max_tokens="100"), "max_tokens"),
    ("max_completion_tokens negative", body(max_completion_tokens=-5), "max_completion_tokens"),
    ("max_completion_tokens float", body(max_completion_tokens=1.5), "max_completion_tokens"),
    ("token limits differ", body(max_tokens=100, max_completion_tokens=200), "max_completion_tokens"),
    # streaming
    ("stream string", body(stream="true"), "stream"),
    ("stream number", body(stream=1), "stream"),
    ("stream_options without stream", body(stream_options={"include_usage": True}), "stream_options"),
    ("stream_options with stream false", body(stream=False, stream_options={}), "stream_options"),
    ("stream_options not object", body(stream=True, stream_options=True), "stream_options"),
    (
        "include_usage not bool",
        body(stream=True, stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
    ),
    (
        "stream_options extra",
        body(stream=True, stream_options={"include_obfuscation": False}),
        "stream_options.include_obfuscation",
    ),
    # tools
    ("tools not array", body(tools=TOOL), "tools"),
    ("too many tools", body(tools=[{"type": "function", "function": {"name": f"t{i}"}} for i in range(129)]), "tools"),
    ("tool not object", body(tools=["get_weather"]), "tools[0]"),
    ("tool type", body(tools=[{**TOOL, "type": "custom"}]), "tools[0].type"),
    ("tool type missing", body(tools=[{"function": TOOL["function"]}]), "tools[0].type"),
    ("tool function missing", body(tools=[{"type": "function"}]), "tools[0].function"),
    ("tool function not object", body(tools=[{"type": "function", "function": "f"}]), "tools[0].function"),
    ("tool name missing", body(tools=[{"type": "function", "function": {}}]), "tools[0].function.name"),
    (
        "tool name space",
        body(tools=[{"type": "function", "function": {"name": "get weather"}}]),
        "tools[0].function.name",
    ),
    ("tool name dot", body(tools=[{"type": "function", "function": {"name": "a.b"}}]), "tools[0].function.name"),
    ("tool name newline", body(tools=[{"type": "function", "function": {"name": "ab\n"}}]), "tools[0].function.name"),
    ("tool name long", body(tools=[{"type": "function", "function": {"name": "a" * 65}}]), "tools[0].function.name"),
    ("tool name empty", body(tools=[{"type": "function", "function": {"name": ""}}]), "tools[0].function.name"),
    ("tool names repeat", body(tools=[TOOL, TOOL]), "tools[1].function.name"),
    (
        "tool description number",
        body(tools=[{"type": "function", "function": {"name": "f", "description": 1}}]),
        "tools[0].function.description",
    ),
    (
        "tool parameters array",
        body(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]),
        "tools[0].function.parameters",
    ),
    (
        "tool strict string",
        body(tools=[{"type": "function", "function": {"name": "f", "strict": "yes"}}]),
        "tools[0].function.strict",
    ),
    ("tool extra", body(tools=[{**TOOL, "cache_control": {}}]), "tools[0].cache_control"),
    (
        "tool function extra",
        body(tools=[{"type": "function", "function": {"name": "f", "returns": {}}}]),
        "tools[0].function.returns",
    ),
    # tool_choice and parallel_tool_calls
    ("tool_choice unknown", body(tools=[TOOL], tool_choice="sometimes"), "tool_choice"),
    ("tool_choice number", body(tools=[TOOL], tool_choice=1), "tool_choice"),
    ("tool_choice auto without tools", body(tool_choice="auto"), "tool_choice"),
    ("tool_choice required without tools", body(tool_choice="required", tools=[]), "tool_choice"),
    (
        "tool_choice function without tools",
        body(tool_choice={"type": "function", "function": {"name": "get_weather"}}),
        "tool_choice.function.name",
    ),
    (
        "tool_choice undeclared",
        body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "other"}}),
        "tool_choice.function.name",
    ),
    (
        "tool_choice type",
        body(tools=[TOOL], tool_choice={"type": "tool", "function": {"name": "get_weather"}}),
        "tool_choice.type",
    ),
    ("tool_choice no function", body(tools=[TOOL], tool_choice={"type": "function"}), "tool_choice.function"),
    (
        "tool_choice extra",
        body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}, "x": 1}),
        "tool_choice.x",
    ),
    (
        "tool_choice function extra",
        body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather", "x": 1}}),
        "tool_choice.function.x",
    ),
    ("parallel_tool_calls string", body(parallel_tool_calls="false"), "parallel_tool_calls"),
    # response_format
    ("response_format string", body(response_format="json"), "response_format"),
    ("response_format type", body(response_format={"type": "xml"}), "response_format.type"),
    ("response_format no type", body(response_format={}), "response_format.type"),
    ("response_format text extra", body(response_format={"type": "text", "x": 1}), "response_format.x"),
    (
        "json_object with schema",
        body(response_format={"type": "json_object", "json_schema": {}}),
        "response_format.json_schema",
    ),
    ("json_schema missing", body(response_format={"type": "json_schema"}), "response_format.json_schema"),
    (
        "json_schema not object",
        body(response_format={"type": "json_schema", "json_schema": "s"}),
        "response_format.json_schema",
    ),
    (
        "json_schema name missing",
        body(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
        "response_format.json_schema.name",
    ),
    (
        "json_schema name invalid",
        body(response_format={"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}),
        "response_format.json_schema.name",
    ),
    (
        "json_schema schema missing",
        body(response_format={"type": "json_schema", "json_schema": {"name": "n"}}),
        "response_format.json_schema.schema",
    ),
    (
        "json_schema schema array",
        body(response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": []}}),
        "response_format.json_schema.schema",
    ),
    (
        "json_schema strict string",
        body(response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": {}, "strict": "y"}}),
        "response_format.json_schema.strict",
    ),
    (
        "json_schema description number",
        body(response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": {}, "description": 1}}),
        "response_format.json_schema.description",
    ),
    (
        "json_schema extra",
        body(response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": {}, "x": 1}}),
        "response_format.json_schema.x",
    ),
    # seed, user, logprobs, logit_bias, reasoning_effort
    ("seed too big", body(seed=2**63), "seed"),
    ("seed too small", body(seed=-(2**63) - 1), "seed"),
    ("seed float", body(seed=1.5), "seed"),
    ("seed bool", body(seed=False), "seed"),
    ("user too long", body(user=LONG), "user"),
    ("user number", body(user=5), "user"),
    ("logprobs string", body(logprobs="true"), "logprobs"),
    ("top_logprobs too big", body(logprobs=True, top_logprobs=21), "top_logprobs"),
    ("top_logprobs negative", body(logprobs=True, top_logprobs=-1), "top_logprobs"),
    ("top_logprobs float", body(logprobs=True, top_logprobs=2.0), "top_logprobs"),
    ("top_logprobs without logprobs", body(top_logprobs=2), "top_logprobs"),
    ("top_logprobs with logprobs false", body(logprobs=False, top_logprobs=2), "top_logprobs"),
    ("logit_bias array", body(logit_bias=[]), "logit_bias"),
    ("logit_bias too many", body(logit_bias={str(i): 1 for i in range(301)}), "logit_bias"),
    ("logit_bias word key", body(logit_bias={"hello": 1}), "logit_bias.hello"),
    ("logit_bias negative key", body(logit_bias={"-1": 1}), "logit_bias.-1"),
    ("logit_bias empty key", body(logit_bias={"": 1}), "logit_bias."),
    ("logit_bias unicode digit", body(logit_bias={"١٢": 1}), "logit_bias.١٢"),
    ("logit_bias too high", body(logit_bias={"50256": 100.5}), "logit_bias.50256"),
    ("logit_bias too low", body(logit_bias={"50256": -101}), "logit_bias.50256"),
    ("logit_bias bool", body(logit_bias={"50256": True}), "logit_bias.50256"),
    ("logit_bias string", body(logit_bias={"50256": "1"}), "logit_bias.50256"),
    ("reasoning_effort unknown", body(reasoning_effort="max"), "reasoning_effort"),
    ("reasoning_effort number", body(reasoning_effort=1), "reasoning_effort"),
    # metadata
    ("metadata array", body(metadata=[]), "metadata"),
    ("metadata too many keys", body(metadata={f"k{i}": "v" for i in range(17)}), "metadata"),
    ("metadata key too long", body(metadata={"k" * 65: "v"}), "metadata"),
    ("metadata value too long", body(metadata={"k": "v" * 513}), "metadata.k"),
    ("metadata value number", body(metadata={"k": 1}), "metadata.k"),
    ("metadata value null", body(metadata={"k": None}), "metadata.k"),
    ("metadata value object", body(metadata={"k": {}}), "metadata.k"),
    # ASI:One extensions and newer OpenAI fields
    ("agent_address too long", body(agent_address=LONG), "agent_address"),
    ("agent_address number", body(agent_address=1), "agent_address"),
    ("web_search string", body(web_search="yes"), "web_search"),
    ("planner_mode number", body(planner_mode=1), "planner_mode"),
    ("study_mode number", body(study_mode=0), "study_mode"),
    ("store string", body(store="true"), "store"),
    ("service_tier unknown", body(service_tier="fast"), "service_tier"),
    ("verbosity unknown", body(verbosity="max"), "verbosity"),
    ("prompt_cache_key too long", body(prompt_cache_key=LONG), "prompt_cache_key"),
    ("safety_identifier number", body(safety_identifier=1), "safety_identifier"),
    ("modalities string", body(modalities="text"), "modalities"),
    ("audio array", body(audio=[]), "audio"),
    ("prediction string", body(prediction="x"), "prediction"),
    ("web_search_options array", body(web_search_options=[]), "web_search_options"),
]


@pytest.mark.parametrize(("payload", "param"), [pytest.param(b, p, id=name) for name, b, p in BAD])
def test_rejected(payload: dict[str, Any], param: str) -> None:
    assert reject(payload).param == param


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (body(messages=...), "messages is required."),
        (body(model=...), "model is required."),
        (body(temperature=3), "temperature must be a number between 0 and 2."),
        (body(n=9), "n must be an integer between 1 and 8."),
        (body(frequency_penalty=9), "frequency_penalty must be a number between -2 and 2."),
        (body(foo=1), "Unknown field 'foo' in the chat completion request."),
        (
            conversation(user("x", foo=1)),
            "Unknown field 'foo' in a user message; accepted fields are content, name, role.",
        ),
        (
            conversation(assistant(None, tool_calls=[CALL]), tool_reply("call_9")),
            "messages[1].tool_call_id 'call_9' does not match the id of a tool call in an earlier assistant message.",
        ),
    ],
)
def test_messages_are_plain_sentences(payload: dict[str, Any], message: str) -> None:
    assert reject(payload).message == message


def test_json_numbers_from_the_parser() -> None:
    """orjson turns 1.0 and 1e2 into floats: integer fields reject them; number fields take them."""
    raw = b'{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1e2}'
    assert reject(parse_json_body(raw)).param == "max_tokens"
    raw = b'{"model":"m","messages":[{"role":"user","content":"x"}],"n":1.0}'
    assert reject(parse_json_body(raw)).param == "n"
    raw = b'{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":1,"top_p":5e-1}'
    request = parse_chat_request(parse_json_body(raw))
    assert (request.temperature, request.top_p) == (1, 0.5)
    raw = b'{"model":"m","messages":[{"role":"user","content":"x"}],"seed":99999999999999999999}'
    assert reject(parse_json_body(raw)).param == "seed"


# ---- the official openai SDK's own request bodies


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request body and answers 400, so the SDK raises at once."""

    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        payload = b'{"error":{"message":"recorded","type":"invalid_request_error","code":"x","param":null}}'
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def sdk() -> Iterator[openai.OpenAI]:
    """The official SDK pointed at a recorder on loopback: what it sends is what a real client sends."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    with openai.OpenAI(api_key="sk-test", base_url=base_url, max_retries=0) as client:
        yield client
    server.shutdown()
    server.server_close()
    thread.join()


def _sdk_body(sdk: openai.OpenAI, **kwargs: Any) -> bytes:
    _Recorder.bodies.clear()
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(**kwargs)
    return _Recorder.bodies[0]


def test_openai_sdk_tool_conversation(sdk: openai.OpenAI) -> None:
    raw = _sdk_body(
        sdk,
        model="gpt-4o-mini",
        messages=[
            {"role": "developer", "content": "Use tools."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": PNG, "detail": "auto"}},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        ],
        tools=[TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        temperature=0.2,
        max_completion_tokens=256,
        stream=True,
        stream_options={"include_usage": True},
        response_format={"type": "json_object"},
        metadata={"trace": "t-1"},
        seed=7,
        stop=["END"],
        logprobs=True,
        top_logprobs=3,
        logit_bias={"50256": -100},
        user="u-1",
        n=2,
        store=False,
        service_tier="auto",
        reasoning_effort="low",
        verbosity="medium",
        prompt_cache_key="pk",
        safety_identifier="sid",
        extra_body={"agent_address": "agent1q", "web_search": False},
    )
    request = parse_chat_request(parse_json_body(raw))
    assert request.include_usage is True
    assert request.tool_choice_name == "get_weather"
    assert request.n == 2
    assert request.image_messages == (1,)
    assert request.metadata == {"trace": "t-1"}


def test_openai_sdk_echoes_its_own_response_message(sdk: openai.OpenAI) -> None:
    """An agent loop appends the SDK's ChatCompletionMessage object as it came back; the SDK re-serialises it."""
    reply = openai.types.chat.ChatCompletionMessage.model_validate(
        {"role": "assistant", "content": None, "refusal": None, "tool_calls": [CALL]}
    )
    raw = _sdk_body(
        sdk,
        model="m",
        messages=[
            {"role": "user", "content": "hi"},
            reply,
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ],
        tools=[TOOL],
    )
    parse_chat_request(parse_json_body(raw))


# ---- the prompt bound (SPEC §9.3)


def _b(value: Any) -> int:
    return len(orjson.dumps(value))


def test_prompt_bound_formula() -> None:
    messages = [{"role": "system", "content": "Be brief."}, user("Ça coûte 5 € ? 日本"), assistant("Oui.")]
    response_format = {"type": "json_object"}
    request = parse_chat_request(conversation(*messages, tools=[TOOL], response_format=response_format))
    expected = 32 + sum(16 + _b(m) for m in messages) + _b([TOOL]) + _b(response_format)
    assert request.prompt_token_bound(3000) == expected
    # UTF-8 bytes with non-ASCII unescaped: "Ça coûte 5 € ? 日本" is 24 bytes, not its \u-escaped length
    assert _b(messages[1]) == len('{"role":"user","content":""}') + len("Ça coûte 5 € ? 日本".encode())


def test_prompt_bound_without_tools_or_format() -> None:
    request = parse_chat_request(body())
    assert request.prompt_token_bound(3000) == 32 + 16 + _b({"role": "user", "content": "Hello"})
    assert parse_chat_request(body(tools=None)).prompt_token_bound(3000) == request.prompt_token_bound(3000)


def test_prompt_bound_counts_the_image_allowance_instead_of_image_bytes() -> None:
    big = image("data:image/png;base64," + "A" * 100_000)
    small = image("https://example.com/a.png", detail="low")
    text = {"type": "text", "text": "What differs?"}
    message = user([text, big, small])
    request = parse_chat_request(conversation(message, user([big])))
    first = _b(message) - _b(big) - _b(small) + 2 * 3000
    second = _b(user([big])) - _b(big) + 3000
    assert request.prompt_token_bound(3000) == 32 + (16 + first) + (16 + second)
    assert request.prompt_token_bound(0) == 32 + (16 + first - 6000) + (16 + second - 3000)
    assert request.messages[0]["content"][1] is request.body["messages"][0]["content"][1]  # nothing rewritten


_text_parts = st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=20))
_image_parts = st.builds(lambda u: image("https://e.com/" + u), st.text("abc", max_size=30))


@given(st.lists(st.lists(st.one_of(_text_parts, _image_parts), min_size=1, max_size=5), min_size=1, max_size=5))
def test_prompt_bound_matches_the_definition(contents: list[list[dict[str, Any]]]) -> None:
    messages = [user(parts) for parts in contents]
    request = parse_chat_request(conversation(*messages))
    expected = 32
    for message in messages:
        images = [part for part in message["content"] if part["type"] == "image_url"]
        expected += 16 + _b(message) - sum(_b(part) for part in images) + 1234 * len(images)
    assert request.prompt_token_bound(1234) == expected


def test_prompt_bound_with_integers_beyond_64_bits() -> None:
    """The exact-integer parser can hand over integers orjson cannot serialise; the bound still works."""
    raw = (
        b'{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":'
        b'{"name":"f","parameters":{"type":"integer","maximum":123456789012345678901234567890}}}]}'
    )
    request = parse_chat_request(parse_json_body(raw))
    tools_bytes = len(b'[{"type":"function","function":{"name":"f","parameters":{"type":"integer","maximum":}}}]') + 30
    assert request.prompt_token_bound(3000) == 32 + 16 + _b(user("x")) + tools_bytes
