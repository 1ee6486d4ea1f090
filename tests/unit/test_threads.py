"""Agent threads, the pure parts (SPEC §16.4): ``thread_id`` and its alias ``conversation`` validated with the field
named, the refused combinations, and what stored turns become (the next context, the listed items)."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.domain.responses_request import parse_responses_request
from tollway.domain.stored_responses import StoredResponse
from tollway.domain.threads import thread_context, thread_items
from tollway.errors import InvalidRequest


def _parse(**fields: Any) -> Any:
    return parse_responses_request({"model": "m", "input": "hi", **fields})


@pytest.mark.parametrize(
    ("fields", "thread"),
    [
        ({}, None),
        ({"thread_id": "support-42_a"}, "support-42_a"),
        ({"thread_id": "x" * 64}, "x" * 64),
        ({"conversation": "conv_1"}, "conv_1"),
        ({"conversation": {"id": "conv_1"}}, "conv_1"),
        ({"thread_id": "t1", "conversation": "t1"}, "t1"),
        ({"thread_id": "t1", "conversation": {"id": "t1"}}, "t1"),
        ({"thread_id": None, "conversation": None}, None),
        ({"thread_id": "t1", "store": True}, "t1"),
    ],
)
def test_thread_id_and_its_alias(fields: dict[str, Any], thread: str | None) -> None:
    assert _parse(**fields).thread_id == thread


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"thread_id": ""}, "thread_id"),
        ({"thread_id": "x" * 65}, "thread_id"),
        ({"thread_id": "has space"}, "thread_id"),
        ({"thread_id": "dot.ted"}, "thread_id"),
        ({"thread_id": "é"}, "thread_id"),
        ({"thread_id": 7}, "thread_id"),
        ({"thread_id": ["t"]}, "thread_id"),
        ({"conversation": ""}, "conversation"),
        ({"conversation": 3}, "conversation"),
        ({"conversation": ["conv_1"]}, "conversation"),
        ({"conversation": {}}, "conversation"),
        ({"conversation": {"id": "c", "extra": 1}}, "conversation"),
        ({"conversation": {"name": "c"}}, "conversation"),
        ({"conversation": {"id": 5}}, "conversation.id"),
        ({"conversation": {"id": "a/b"}}, "conversation.id"),
        ({"thread_id": "t1", "conversation": "t2"}, "conversation"),
        ({"thread_id": "t1", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "t1", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"thread_id": "t1", "store": False}, "store"),
        ({"conversation": {"id": "t1"}, "store": False}, "store"),
    ],
)
def test_bad_threads_are_refused_at_their_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        _parse(**fields)
    assert (err.value.param, err.value.code, err.value.status) == (param, "invalid_request", 400)


def test_previous_response_id_refusal_names_both_fields() -> None:
    for field in ("thread_id", "conversation"):
        with pytest.raises(InvalidRequest) as err:
            _parse(**{field: "t1", "previous_response_id": "resp_1"})
        assert field in err.value.message and "previous_response_id" in err.value.message


def _turn(text: str, answer: str, *extra_output: dict[str, Any]) -> StoredResponse:
    message = {
        "type": "message",
        "id": f"msg_{answer}",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": answer, "annotations": []}],
    }
    body = {"id": f"resp_{answer}", "output": [message, *extra_output]}
    return StoredResponse([{"type": "message", "role": "user", "content": text}], body)


def test_context_is_each_turns_input_then_its_output_as_input() -> None:
    call = {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": "{}", "status": "x"}
    turns = [_turn("one", "uno"), _turn("two", "dos", call)]
    assert thread_context(turns) == [
        {"type": "message", "role": "user", "content": "one"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "uno"}]},
        {"type": "message", "role": "user", "content": "two"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "dos"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    ]
    assert thread_context([]) == []


def test_items_are_each_turns_input_then_its_output_as_answered() -> None:
    turns = [_turn("one", "uno"), _turn("two", "dos")]
    items = thread_items(turns)
    assert [item.get("id") for item in items] == [None, "msg_uno", None, "msg_dos"]
    assert items[1] == turns[0].body["output"][0] and items[2] == turns[1].input_items[0]
