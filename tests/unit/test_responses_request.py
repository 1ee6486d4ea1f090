"""Validation of Responses API bodies (SPEC §7.6): accepted shapes normalised into canonical items, and every
rejected one answered with the JSON path of its cause (SPEC §1.2, §3)."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.domain.responses_items import check_call_ids, output_as_input, parse_input, prompt_token_bound
from tollway.domain.responses_request import parse_responses_request
from tollway.errors import InvalidRequest, UnsupportedParameter

TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def _parse(**fields: Any) -> Any:
    return parse_responses_request({"model": "m", "input": "hi", **fields})


def test_string_input_is_one_user_message_and_defaults_apply() -> None:
    request = _parse()
    assert request.input == [{"type": "message", "role": "user", "content": "hi"}]
    assert (request.store, request.stream, request.tools, request.metadata) == (True, False, [], {})
    assert (request.text_format, request.format_param, request.max_output_tokens) == (None, "text.format", None)


def test_items_are_normalised_and_echoed_output_fields_dropped() -> None:
    items = parse_input(
        [
            {"role": "developer", "content": "Be terse."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {
                "id": "msg_1",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "b", "annotations": [], "logprobs": []}],
            },
            {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "ok"}]},
        ]
    )
    assert items == [
        {"type": "message", "role": "developer", "content": "Be terse."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "b"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"seed": 1}, "seed"),
        ({"input": None}, "input"),
        ({"input": []}, "input"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": [{"type": "image_url"}]}]}, "input[0].content[0].type"),
        (
            {"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "https://x"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]},
            "input[0].content[0].image_url",
        ),
        ({"input": [{"role": "user", "content": "x", "name": "n"}]}, "input[0].name"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "input[0].arguments"),
        ({"input": [{"type": "function_call_output", "call_id": "", "output": "x"}]}, "input[0].call_id"),
        ({"instructions": 3}, "instructions"),
        ({"tools": [{"type": "function", "name": "bad name"}]}, "tools[0].name"),
        ({"tools": [TOOL, TOOL]}, "tools[1].name"),
        ({"tools": [{**TOOL, "function": {}}]}, "tools[0].function"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"type": "function", "name": "other"}}, "tool_choice.name"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": 1.0}, "max_output_tokens"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": True}, "top_p"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"text": {"verbosity": "loud"}}, "text.verbosity"),
        ({"text": {"verbosity": 1}}, "text.verbosity"),
        ({"text": {"stop": 1}}, "text.stop"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"text": {"format": {"type": "text"}}, "response_format": {"type": "text"}}, "response_format"),
        ({"reasoning": {"effort": "max"}}, "reasoning.effort"),
        ({"reasoning": {"summary": "long"}}, "reasoning.summary"),
        ({"reasoning": {"generate_summary": 1}}, "reasoning.generate_summary"),
        ({"reasoning": {"context": "all"}}, "reasoning.context"),
        ({"reasoning": {"mode": 1}}, "reasoning.mode"),
        ({"reasoning": {"budget": 1}}, "reasoning.budget"),
        ({"include": "reasoning.encrypted_content"}, "include"),
        ({"include": [1]}, "include[0]"),
        ({"include": ["ok", ""]}, "include[1]"),
        ({"truncation": "on"}, "truncation"),
        ({"truncation": True}, "truncation"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": -1}, "top_logprobs"),
        ({"top_logprobs": 1.5}, "top_logprobs"),
        ({"max_tool_calls": 0}, "max_tool_calls"),
        ({"max_tool_calls": "3"}, "max_tool_calls"),
        ({"service_tier": "fast"}, "service_tier"),
        ({"prompt_cache_key": 7}, "prompt_cache_key"),
        ({"prompt_cache_key": "k" * 257}, "prompt_cache_key"),
        ({"safety_identifier": ["u"]}, "safety_identifier"),
        ({"prompt_cache_retention": "1y"}, "prompt_cache_retention"),
        ({"prompt": "pmpt_1"}, "prompt"),
        ({"prompt": {"version": "1"}}, "prompt.id"),
        ({"prompt": {"id": "p", "variables": []}}, "prompt.variables"),
        ({"prompt": {"id": "p", "extra": 1}}, "prompt.extra"),
        ({"background": "yes"}, "background"),
        ({"stream_options": {"include_obfuscation": False}}, "stream_options"),
        ({"moderation": "block"}, "moderation"),
        ({"context_management": {}}, "context_management"),
        ({"agent_address": 5}, "agent_address"),
        ({"web_search": "yes"}, "web_search"),
        ({"planner_mode": 1}, "planner_mode"),
        ({"study_mode": "on"}, "study_mode"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"store": "yes"}, "store"),
        ({"previous_response_id": 7}, "previous_response_id"),
    ],
)
def test_invalid_fields_name_their_path(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        _parse(**fields)
    assert err.value.param == param and err.value.code == "invalid_request"


def test_parity_fields_are_accepted_and_kept() -> None:
    request = _parse(
        include=["reasoning.encrypted_content", "message.output_text.logprobs"],
        truncation="auto",
        reasoning={"effort": "low", "summary": "auto", "context": "auto", "mode": "standard"},
        text={"format": {"type": "text"}, "verbosity": "low"},
        top_logprobs=3,
        max_tool_calls=4,
        service_tier="flex",
        prompt_cache_key="pck",
        safety_identifier="sid",
        prompt_cache_retention="24h",
        prompt={"id": "pmpt_1", "variables": {"city": "Paris"}, "version": "2"},
        background=False,
        stream=True,
        stream_options={"include_obfuscation": False},
        context_management=[{"type": "compaction"}],
        image={"context_compression": "auto"},
        agent_address="agent1q",
        web_search=True,
        planner_mode=False,
        study_mode=True,
    )
    options = request.options
    assert options.include == ("reasoning.encrypted_content", "message.output_text.logprobs")
    assert (options.truncation, options.top_logprobs, options.max_tool_calls) == ("auto", 3, 4)
    assert (options.service_tier, options.prompt_cache_key, options.safety_identifier) == ("flex", "pck", "sid")
    assert options.prompt == {"id": "pmpt_1", "variables": {"city": "Paris"}, "version": "2"}
    assert (request.reasoning_effort, request.reasoning_summary, request.verbosity) == ("low", "auto", "low")
    assert options.logprobs


def test_parity_defaults_and_empty_include() -> None:
    request = _parse(include=[], reasoning={"summary": None}, text={"verbosity": None}, truncation=None)
    assert (request.options.include, request.options.truncation) == ((), "disabled")
    assert (request.reasoning_summary, request.verbosity, request.options.logprobs) == (None, None, False)
    assert _parse(reasoning={"generate_summary": "concise"}).reasoning_summary == "concise"
    assert _parse(top_logprobs=0).options.logprobs


def test_background_is_unsupported() -> None:
    with pytest.raises(UnsupportedParameter) as err:
        _parse(background=True)
    assert (err.value.param, err.value.code, err.value.status) == ("background", "unsupported_parameter", 400)
    assert "background" in err.value.message


def test_output_items_tollway_does_not_model_pass_through_input_and_context() -> None:
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"}
    search = {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}}
    assert parse_input([reasoning, search]) == [reasoning, search]
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}
    assert output_as_input([reasoning, message, search]) == [reasoning, message, search]
    assert prompt_token_bound([reasoning], None, [], None, 3000) > prompt_token_bound([], None, [], None, 3000)


def test_hosted_tools_are_unsupported_at_their_type() -> None:
    with pytest.raises(UnsupportedParameter) as err:
        _parse(tools=[TOOL, {"type": "web_search_preview"}])
    assert (err.value.param, err.value.code, err.value.status) == ("tools[1].type", "unsupported_parameter", 400)


def test_response_format_alias_in_either_shape() -> None:
    flat = {"type": "json_schema", "name": "city", "schema": {"type": "object"}, "strict": True}
    assert _parse(response_format=flat).text_format == flat
    assert _parse(response_format=flat).format_param == "response_format"
    chat_shaped = {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"}}}
    assert _parse(response_format=chat_shaped).text_format == {
        "type": "json_schema",
        "name": "city",
        "schema": {"type": "object"},
    }
    assert _parse(text={"format": {"type": "json_object"}}).text_format == {"type": "json_object"}


def test_call_ids_must_answer_an_earlier_call_of_the_rebuilt_context() -> None:
    previous = [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]
    answer = [{"type": "function_call_output", "call_id": "c1", "output": "x"}]
    check_call_ids(previous, answer)
    with pytest.raises(InvalidRequest) as err:
        check_call_ids([], [{"type": "message", "role": "user", "content": "x"}, *answer])
    assert err.value.param == "input[1].call_id"
    check_call_ids([], [*previous, *answer])  # a call earlier in the same input counts
    with pytest.raises(InvalidRequest):
        check_call_ids([], [*answer, *previous])  # but not a later one


def test_stored_output_becomes_assistant_items() -> None:
    output = [
        {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant", "content": [
            {"type": "output_text", "text": "hi", "annotations": []}
        ]},
        {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "c", "name": "f", "arguments": "{}"},
    ]  # fmt: skip
    assert output_as_input(output) == [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
    ]


def test_prompt_bound_counts_items_instructions_tools_and_format() -> None:
    item = {"type": "message", "role": "user", "content": "hi"}
    size = len(b'{"type":"message","role":"user","content":"hi"}')
    assert prompt_token_bound([item], None, [], None, 3000) == 32 + 16 + size
    instructions = len(b'{"role":"system","content":"be nice"}')
    tools_size = len(b'[{"type":"function","name":"get_weather","parameters":{"type":"object"}}]')
    fmt = {"type": "json_object"}
    expected = 32 + 16 + size + 16 + instructions + tools_size + len(b'{"type":"json_object"}')
    assert prompt_token_bound([item], "be nice", [TOOL], fmt, 3000) == expected


def test_prompt_bound_counts_the_image_allowance_instead_of_bytes() -> None:
    text = {"type": "input_text", "text": "hi"}
    image = {"type": "input_image", "image_url": "data:image/png;base64," + "A" * 10_000}
    with_image = {"type": "message", "role": "user", "content": [text, image]}
    without = {"type": "message", "role": "user", "content": [text]}
    # the image's bytes and its separating comma are replaced by the allowance
    assert (
        prompt_token_bound([with_image], None, [], None, 3000)
        == prompt_token_bound([without], None, [], None, 0) + 3001
    )
