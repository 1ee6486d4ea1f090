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
        ({"input": [{"type": "reasoning"}]}, "input[0].type"),
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
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"text": {"format": {"type": "text"}}, "response_format": {"type": "text"}}, "response_format"),
        ({"reasoning": {"effort": "max"}}, "reasoning.effort"),
        ({"reasoning": {"summary": "auto"}}, "reasoning.summary"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"store": "yes"}, "store"),
        ({"previous_response_id": 7}, "previous_response_id"),
    ],
)
def test_invalid_fields_name_their_path(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        _parse(**fields)
    assert err.value.param == param and err.value.code == "invalid_request"


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
