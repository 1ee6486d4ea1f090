"""Translation of the Responses parity fields (SPEC §7.6): what the native payload forwards as sent, what the chat
form translates or ignores, reasoning summaries and logprobs in output and streams (validated against the SDK's
types), passthrough of items Tollway does not model, and ``truncation: auto``."""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from tests.unit.golden import candidate
from tollway.domain.catalog import ProviderKind
from tollway.domain.chat_request import parse_chat_request
from tollway.domain.pricing import Usage
from tollway.domain.responses_chat import chat_body, chat_messages
from tollway.domain.responses_items import output_as_input, parse_input, prompt_token_bound, truncated
from tollway.domain.responses_output import ResponseEventStream, output_of_choice
from tollway.domain.responses_request import parse_responses_request
from tollway.domain.upstream import ResponsesCall
from tollway.errors import InvalidRequest
from tollway.providers.gemini.translate import build_payload as gemini_payload
from tollway.providers.openai.responses import EventTranslator, build_payload, native_input, normalise_response
from tollway.providers.openai.translate import build_payload as openai_payload

EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
REASONING = {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}]}
SEARCH = {"id": "ws_1", "type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "q"}}
PARITY: dict[str, Any] = {
    "include": ["reasoning.encrypted_content"],
    "truncation": "auto",
    "reasoning": {"effort": "low", "summary": "detailed"},
    "text": {"format": {"type": "json_object"}, "verbosity": "high"},
    "prompt_cache_key": "pck",
    "safety_identifier": "sid",
    "service_tier": "priority",
    "top_logprobs": 3,
    "max_tool_calls": 5,
    "prompt": {"id": "pmpt_1"},
    "prompt_cache_retention": "24h",
    "background": False,
}


def _request(**fields: Any) -> Any:
    return parse_responses_request({"model": "m", "input": "hi", **fields})


def _strict(event: dict[str, Any]) -> Any:
    usage = event.get("response", {}).get("usage")
    if usage is not None:
        details = {**usage["input_tokens_details"], "cache_write_tokens": 0}
        event = {**event, "response": {**event["response"], "usage": {**usage, "input_tokens_details": details}}}
    return EVENT.validate_python(event)


def _skeleton() -> dict[str, Any]:
    return {
        "id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress", "model": "m", "output": [],
        "usage": None, "previous_response_id": None, "incomplete_details": None, "error": None, "metadata": {},
        "instructions": None, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "temperature": None,
        "top_p": None,
    }  # fmt: skip


def test_native_payload_forwards_the_parity_fields_as_sent() -> None:
    request = _request(**PARITY, stream=True, stream_options={"include_obfuscation": False}, agent_address="a")
    call = ResponsesCall(request, request.input, candidate(ProviderKind.OPENAI), 100, 0.0)
    payload = build_payload(call)
    for key in ("include", "truncation", "prompt_cache_key", "safety_identifier", "service_tier", "top_logprobs"):
        assert payload[key] == PARITY[key]
    assert (payload["max_tool_calls"], payload["prompt"], payload["prompt_cache_retention"]) == (
        5,
        {"id": "pmpt_1"},
        "24h",
    )
    assert payload["reasoning"] == {"effort": "low", "summary": "detailed"}
    assert payload["text"] == {"format": {"type": "json_object"}, "verbosity": "high"}
    assert payload["stream_options"] == {"include_obfuscation": False} and payload["store"] is False
    assert "background" not in payload and "agent_address" not in payload  # neutral; an ASI:One extension (D)


def test_chat_form_translates_logprobs_and_asi1_extensions_and_ignores_the_rest() -> None:
    request = _request(
        include=["message.output_text.logprobs"], top_logprobs=2, text={"verbosity": "low"}, prompt_cache_key="k",
        safety_identifier="s", service_tier="flex", max_tool_calls=1, truncation="auto",
        agent_address="agent1q", web_search=True, planner_mode=False, study_mode=True,
    )  # fmt: skip
    body = chat_body(request, request.input)
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    assert (body["agent_address"], body["web_search"], body["planner_mode"], body["study_mode"]) == (
        "agent1q", True, False, True,
    )  # fmt: skip
    ignored = {"verbosity", "prompt_cache_key", "safety_identifier", "service_tier", "max_tool_calls", "truncation"}
    assert not ignored & set(body) and "include" not in body
    assert "logprobs" not in chat_body(_request(include=["reasoning.encrypted_content"]), [])


def test_chat_form_skips_items_it_cannot_carry() -> None:
    items = [{"type": "message", "role": "user", "content": "q"}, REASONING, SEARCH]
    assert chat_messages(None, items) == [{"role": "user", "content": "q"}]


def test_native_input_keeps_hosted_items_and_only_resolvable_reasoning() -> None:
    encrypted = {**REASONING, "encrypted_content": "opaque"}
    assert native_input([REASONING, SEARCH, encrypted]) == [SEARCH, encrypted]


def test_native_answer_keeps_its_output_unchanged() -> None:
    message = {
        "id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": "Hi", "annotations": [], "logprobs": []}],
    }  # fmt: skip
    raw = {"status": "completed", "output": [REASONING, SEARCH, message], "usage": None}
    result = normalise_response(raw, "p")
    assert result.body["output"] == [REASONING, SEARCH, message]
    assert result.body["choices"][0]["message"]["content"] == "Hi"


def test_native_stream_passes_unmodelled_item_events_through() -> None:
    translator = EventTranslator("p")

    def feed(event: dict[str, Any]) -> list[Any]:
        return translator.feed(orjson.dumps(event))

    (added,) = feed({"type": "response.output_item.added", "output_index": 0, "item": REASONING, "sequence_number": 2})
    assert added.chunk == {"choices": [], "passthrough": {**_event_of(added)}}
    delta = {"type": "response.reasoning_summary_text.delta", "output_index": 0, "item_id": "rs_1", "delta": "hm"}
    assert feed(delta)[0].chunk["passthrough"] == delta
    message = {"id": "m", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    assert feed({"type": "response.output_item.added", "output_index": 1, "item": message}) == []
    text = feed({"type": "response.output_text.delta", "output_index": 1, "delta": "Hi"})
    assert text[0].chunk["choices"][0]["delta"] == {"content": "Hi"}


def _event_of(chunk: Any) -> dict[str, Any]:
    event: dict[str, Any] = chunk.chunk["passthrough"]
    return event


def test_summary_turns_reasoning_content_into_a_reasoning_item() -> None:
    logprobs = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}]}
    choice = {
        "message": {"role": "assistant", "content": "Hi", "reasoning_content": "hm"},
        "finish_reason": "stop",
        "logprobs": logprobs,
    }
    output, status, _ = output_of_choice(choice, summary=True)
    assert [item["type"] for item in output] == ["reasoning", "message"] and status == "completed"
    assert output[0]["summary"] == [{"type": "summary_text", "text": "hm"}]
    assert output[1]["content"][0]["logprobs"] == [
        {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}
    ]
    Response.model_validate({**_skeleton(), "status": "completed", "output": output})
    assert [item["type"] for item in output_of_choice(choice)[0]] == ["message"]


def test_event_stream_reasoning_summary_and_passthrough_sequence() -> None:
    writer = ResponseEventStream(_skeleton(), summary=True)
    events = writer.opening()
    events += writer.passthrough({"type": "response.output_item.added", "output_index": 0, "item": SEARCH})
    events += writer.passthrough({"type": "response.web_search_call.completed", "output_index": 0, "item_id": "ws_1"})
    events += writer.passthrough({"type": "response.output_item.done", "output_index": 0, "item": SEARCH})
    events += writer.passthrough({"type": "response.unknown.event", "output_index": 9})  # no such item: dropped
    events += writer.feed({"reasoning_content": "h"})
    events += writer.feed({"reasoning_content": "m"})
    logprobs = {"content": [{"token": "Hi", "logprob": -0.5, "bytes": None}]}
    events += writer.feed({"content": "Hi"}, logprobs)
    events += writer.finish("stop", Usage(5, 6, 0, 2))
    parsed = [_strict(event) for event in events]
    assert [e.sequence_number for e in parsed] == list(range(len(events)))
    assert [e.type for e in parsed] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.web_search_call.completed", "response.output_item.done",
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert [e.output_index for e in parsed[2:5]] == [0, 0, 0] and parsed[5].output_index == 1
    final = parsed[-1].response
    assert [item.type for item in final.output] == ["web_search_call", "reasoning", "message"]
    assert final.output[1].summary[0].text == "hm"
    assert events[14]["logprobs"] == [{"token": "Hi", "logprob": -0.5, "bytes": [], "top_logprobs": []}]


def _message(role: str, text: str) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": text}


def test_truncation_drops_the_oldest_non_system_items_and_whole_calls() -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    answer = {"type": "function_call_output", "call_id": "c1", "output": "x" * 50}
    items = [_message("system", "rules"), _message("user", "a" * 50), call, answer, _message("user", "b" * 50)]
    full = prompt_token_bound(items, None, [], None, 3000)
    assert truncated(items, full, None, [], None, 3000) == items  # fits: nothing dropped
    kept = truncated(items, full - 1, None, [], None, 3000)
    assert kept == [items[0], call, answer, items[4]]
    kept = truncated(items, full - 150, None, [], None, 3000)
    assert kept == [items[0], items[4]]  # the call went, and its output with it
    assert truncated(items, 1, "instructions", [], None, 3000) == [items[0], items[4]]  # the newest always stays


SIGNED: dict[str, Any] = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "f", "arguments": "{}"},
            "extra_content": {"google": {"thought_signature": "c2ln"}},
        }
    ],
}
CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "q"},
    SIGNED,
    {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
]


def test_thought_signatures_go_back_to_gemini_only() -> None:
    chat = parse_chat_request({"model": "m", "messages": CONVERSATION})
    (model_turn,) = [c for c in gemini_payload(chat, 10)["contents"] if c["role"] == "model"]
    assert model_turn["parts"] == [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"}]
    for kind in (ProviderKind.OPENAI, ProviderKind.OPENAI_COMPATIBLE, ProviderKind.ASI1):
        sent = openai_payload(chat, candidate(kind), 10)["messages"][1]["tool_calls"][0]
        assert "extra_content" not in sent and sent["id"] == "call_1"
    bad = {**SIGNED, "tool_calls": [{**SIGNED["tool_calls"][0], "extra_content": "sig"}]}
    with pytest.raises(InvalidRequest) as err:
        parse_chat_request({"model": "m", "messages": [CONVERSATION[0], bad, CONVERSATION[2]]})
    assert err.value.param == "messages[1].tool_calls[0].extra_content"


def test_thought_signatures_stay_on_function_call_items() -> None:
    extra = {"google": {"thought_signature": "c2ln"}}
    choice = {"message": {"role": "assistant", "content": None, "tool_calls": SIGNED["tool_calls"]}}
    output, _, _ = output_of_choice({**choice, "finish_reason": "tool_calls"})
    assert output[0]["extra_content"] == extra
    (item,) = output_as_input(output)
    assert item["extra_content"] == extra
    assert chat_messages(None, [item])[0]["tool_calls"][0]["extra_content"] == extra
    assert "extra_content" not in native_input([item])[0]
    assert parse_input([{**item, "id": "fc_1"}]) == [item]
    with pytest.raises(InvalidRequest) as err:
        parse_input([{**item, "extra_content": []}])
    assert err.value.param == "input[0].extra_content"
