"""``{type: "mcp"}`` tools of /v1/responses (SPEC §16.3) as pure rules: field validation naming ``tools[i].…``, the
approval rules, the names tools are offered under, approval responses checked against the chain, the model's view
of ``mcp_*`` items, and ``tool_choice: {"type": "mcp"}`` validated and translated into a forced function."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.domain.chat_request import parse_chat_request
from tollway.domain.mcp_items import DENIED, check_approvals, intercept, listed_tools, model_items, result_text
from tollway.domain.mcp_tools import (
    check_forced,
    check_required,
    forced_choice,
    function_name,
    offered_tools,
    parse_mcp_tool,
)
from tollway.domain.mcp_turns import answered, forces, turn_choice, turn_inputs
from tollway.domain.responses_request import parse_responses_request
from tollway.errors import InvalidRequest, UnsupportedParameter, UpstreamError

URL = "https://tools.example.com/mcp"


def tool(**extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "tools", "server_url": URL, **extra}


def request(*tools: dict[str, Any], **extra: Any) -> Any:
    return parse_responses_request({"model": "m", "input": "hi", "tools": list(tools), **extra})


@pytest.mark.parametrize(
    ("bad", "param"),
    [
        ({"server_label": "no spaces"}, "tools[1].server_label"),
        ({"server_label": "x" * 65}, "tools[1].server_label"),
        ({"server_url": None}, "tools[1].server_url"),
        ({"server_url": 5}, "tools[1].server_url"),
        ({"allowed_tools": "echo"}, "tools[1].allowed_tools"),
        ({"allowed_tools": [1]}, "tools[1].allowed_tools[0]"),
        ({"allowed_tools": {"tool_names": "echo"}}, "tools[1].allowed_tools.tool_names"),
        ({"allowed_tools": {"names": ["echo"]}}, "tools[1].allowed_tools.names"),
        ({"allowed_tools": ["echo", "fail", "echo"]}, "tools[1].allowed_tools[2]"),
        ({"allowed_tools": {"tool_names": ["echo", "echo"]}}, "tools[1].allowed_tools.tool_names[1]"),
        ({"require_approval": "sometimes"}, "tools[1].require_approval"),
        ({"require_approval": {"never": ["echo"]}}, "tools[1].require_approval.never"),
        ({"require_approval": {"maybe": {}}}, "tools[1].require_approval.maybe"),
        ({"headers": {"X-Key": 5}}, "tools[1].headers"),
        ({"headers": {"X-Key": "a\r\nb"}}, "tools[1].headers"),
        ({"server_description": 5}, "tools[1].server_description"),
        ({"authorization": 5}, "tools[1].authorization"),
        ({"surprise": True}, "tools[1].surprise"),
    ],
)
def test_bad_fields_are_refused_by_path(bad: dict[str, Any], param: str) -> None:
    function = {"type": "function", "name": "f"}
    with pytest.raises(InvalidRequest) as caught:
        request(function, tool(**bad))
    assert caught.value.param == param


def test_labels_are_unique_and_connectors_unsupported() -> None:
    with pytest.raises(InvalidRequest) as caught:
        request(tool(), tool(server_url="https://other.example.com/mcp"))
    assert caught.value.param == "tools[1].server_label"
    with pytest.raises(UnsupportedParameter) as refused:
        request(tool(connector_id="connector_gmail"))
    assert refused.value.param == "tools[0].connector_id"


def test_a_valid_tool_is_kept_apart_from_function_tools_and_echoed_without_credentials() -> None:
    parsed = request(
        {"type": "function", "name": "f"},
        tool(headers={"X-Key": "secret"}, authorization="tok", allowed_tools={"tool_names": ["echo"]}),
        tool_choice="required",
    )
    assert [t["name"] for t in parsed.tools] == ["f"]
    (server,) = parsed.mcp
    assert server.headers == {"X-Key": "secret", "Authorization": "Bearer tok"}
    assert "secret" not in repr(server)
    assert parsed.echoed_tools[1] == {
        "type": "mcp", "server_label": "tools", "server_url": URL, "allowed_tools": {"tool_names": ["echo"]},
    }  # fmt: skip
    assert request(tool(), tool_choice="auto").tool_choice == "auto"  # mcp tools alone are tools


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (None, {"echo": True, "fail": True}),
        ("always", {"echo": True, "fail": True}),
        ("never", {"echo": False, "fail": False}),
        ({"never": {"tool_names": ["echo"]}}, {"echo": False, "fail": True}),
        ({"always": {"tool_names": ["echo"]}}, {"echo": True, "fail": False}),
        ({"always": {"tool_names": ["echo"]}, "never": {"tool_names": ["fail"]}}, {"echo": True, "fail": False}),
        ({"never": {"read_only": True}}, {"echo": False, "fail": True}),
    ],
)
def test_approval_rules(rule: Any, expected: dict[str, bool]) -> None:
    server = parse_mcp_tool(tool(require_approval=rule) if rule is not None else tool(), 0)
    tools = {"echo": {"name": "echo", "annotations": {"readOnlyHint": True}}, "fail": {"name": "fail"}}
    assert {name: server.approval.required(t) for name, t in tools.items()} == expected


def test_function_names_are_stable_and_collision_free() -> None:
    assert function_name("tools", "echo") == "tools__echo"
    odd = function_name("tools", "get.time/now")
    assert odd == function_name("tools", "get.time/now") and odd.startswith("tools__get_time_now_")
    assert len(function_name("x" * 64, "y" * 128)) <= 64
    taken = function_name("tools", "echo", {"tools__echo"})
    assert taken != "tools__echo" and taken.startswith("tools__echo_")
    servers = [parse_mcp_tool(tool(server_label="a__b"), 0), parse_mcp_tool(tool(server_label="a"), 1)]
    listings = {"a__b": {"tools": [{"name": "c"}]}, "a": {"tools": [{"name": "b__c"}, {"name": "hidden"}]}}
    offered = offered_tools(servers, listings, reserved=())
    names = list(offered)
    assert len(names) == 3 and names[0] == "a__b__c" and names[1] != "a__b__c"
    filtered = parse_mcp_tool(tool(server_label="a", allowed_tools=["b__c"]), 1)
    assert [o.tool["name"] for o in offered_tools([filtered], listings, ()).values()] == ["b__c"]


def test_listing_and_results_as_items() -> None:
    listing = {"tools": [{"name": "echo", "description": "E", "inputSchema": {"type": "object"}}, {"bad": 1}]}
    assert listed_tools(listing) == [
        {"name": "echo", "description": "E", "input_schema": {"type": "object"}, "annotations": None}
    ]
    body = {"content": [{"type": "text", "text": "a"}, {"type": "image", "data": "x", "mimeType": "image/png"}]}
    assert result_text(body) == 'a\n{"type":"image","data":"x","mimeType":"image/png"}'


def test_intercept_turns_calls_to_mcp_tools_into_items() -> None:
    never = parse_mcp_tool(tool(require_approval="never"), 0)
    always = parse_mcp_tool(tool(server_label="ask"), 1)
    listings = {"tools": {"tools": [{"name": "echo"}]}, "ask": {"tools": [{"name": "echo"}]}}
    offered = offered_tools([never, always], listings, ("f",))
    output = [
        {"type": "message", "content": []},
        {"type": "function_call", "call_id": "c1", "name": "tools__echo", "arguments": '{"text":"x"}'},
        {"type": "function_call", "call_id": "c2", "name": "ask__echo", "arguments": "{}"},
        {"type": "function_call", "call_id": "c3", "name": "f", "arguments": "{}"},
    ]
    out = intercept(output, offered)
    assert [i["type"] for i in out] == ["message", "mcp_call", "mcp_approval_request", "function_call"]
    assert out[1]["status"] == "in_progress" and out[1]["arguments"] == '{"text":"x"}'
    assert out[2]["id"].startswith("mcpr_")


def test_approval_responses_must_answer_a_pending_request() -> None:
    asked = {"type": "mcp_approval_request", "id": "mcpr_1", "server_label": "t", "name": "echo", "arguments": "{}"}
    answer = {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True}
    assert check_approvals([asked], [answer]) == [(asked, True)]
    with pytest.raises(InvalidRequest) as caught:
        check_approvals([asked], [{"type": "message"}, {**answer, "approval_request_id": "mcpr_2"}])
    assert caught.value.param == "input[1].approval_request_id"
    done = {"type": "mcp_call", "id": "mcp_1", "approval_request_id": "mcpr_1"}
    with pytest.raises(InvalidRequest):
        check_approvals([asked, done], [answer])  # answered already
    with pytest.raises(InvalidRequest) as bad:
        parse_responses_request({"model": "m", "input": [{"type": "mcp_approval_response", "approve": True}]})
    assert bad.value.param == "input[0].approval_request_id"


def _call(item_id: str, output: str | None, error: str | None, request_id: str | None) -> dict[str, Any]:
    return {
        "type": "mcp_call", "id": item_id, "server_label": "t", "name": "echo", "arguments": "{}", "output": output,
        "error": error, "approval_request_id": request_id, "status": "completed" if error is None else "failed",
    }  # fmt: skip


def test_the_model_sees_mcp_items_as_function_calls() -> None:
    def name(label: str, tool_name: str) -> str:
        return f"{label}__{tool_name}"

    items: list[dict[str, Any]] = [
        {"type": "message", "role": "user", "content": "hi"},
        {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "t", "tools": [], "error": None},
        _call("mcp_1", "ok", None, None),
        {"type": "mcp_approval_request", "id": "mcpr_1", "server_label": "t", "name": "echo", "arguments": "{}"},
        {"type": "mcp_approval_request", "id": "mcpr_2", "server_label": "t", "name": "fail", "arguments": "{}"},
        {"type": "mcp_approval_request", "id": "mcpr_3", "server_label": "t", "name": "echo", "arguments": "{}"},
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_2", "approve": False, "reason": "no"},
        _call("mcp_2", None, "boom", "mcpr_1"),
    ]
    view = model_items(items, name)
    assert view == [
        items[0],
        {"type": "function_call", "call_id": "mcp_1", "name": "t__echo", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "mcp_1", "output": "ok"},
        {"type": "function_call", "call_id": "mcpr_1", "name": "t__echo", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "mcpr_1", "output": "Error: boom"},
        {"type": "function_call", "call_id": "mcpr_2", "name": "t__fail", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "mcpr_2", "output": f"{DENIED} Reason: no"},
    ]  # mcpr_3 is still pending: left out


def test_chat_completions_point_mcp_tools_to_responses() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [tool()]}
    with pytest.raises(UnsupportedParameter) as caught:
        parse_chat_request(body)
    assert caught.value.param == "tools[0].type" and "/v1/responses" in caught.value.message


def test_tool_choice_mcp_is_parsed_against_the_requests_servers() -> None:
    choice = {"type": "mcp", "server_label": "tools", "name": "echo"}
    assert request(tool(), tool_choice=choice).tool_choice == choice
    assert request(tool(), tool_choice={"type": "mcp", "server_label": "tools"}).tool_choice == {
        "type": "mcp",
        "server_label": "tools",
    }
    for bad, param in [
        ({"type": "mcp", "server_label": "other"}, "tool_choice.server_label"),
        ({"type": "mcp"}, "tool_choice.server_label"),
        ({"type": "mcp", "server_label": "tools", "name": ""}, "tool_choice.name"),
        ({"type": "mcp", "server_label": "tools", "name": ["echo"]}, "tool_choice.name"),
        ({"type": "mcp", "server_label": "tools", "mode": "auto"}, "tool_choice.mode"),
        ({"type": "web_search"}, "tool_choice.type"),
    ]:
        with pytest.raises(InvalidRequest) as caught:
            request(tool(), tool_choice=bad)
        assert caught.value.param == param, bad
    with pytest.raises(InvalidRequest) as caught:  # no mcp tools at all
        parse_responses_request({"model": "m", "input": "hi", "tool_choice": {"type": "mcp", "server_label": "t"}})
    assert caught.value.param == "tool_choice.server_label"


def test_a_forced_tool_must_be_one_the_server_offers() -> None:
    server = parse_mcp_tool(tool(allowed_tools=["echo", "fail"]), 0)
    listing = {"tools": [{"name": "echo"}, {"name": "fail"}, {"name": "secret"}]}
    check_forced({"server_label": "tools", "name": "echo"}, server, listing, None)
    check_forced({"server_label": "tools"}, server, listing, None)
    for name in ("secret", "nope"):  # listed but not allowed, and not listed
        with pytest.raises(InvalidRequest) as caught:
            check_forced({"server_label": "tools", "name": name}, server, listing, None)
        assert caught.value.param == "tool_choice.name"
    with pytest.raises(InvalidRequest) as caught:
        check_forced({"server_label": "tools"}, server, {"tools": [{"name": "secret"}]}, None)
    assert caught.value.param == "tool_choice.server_label"
    with pytest.raises(UpstreamError) as failed:
        check_forced({"server_label": "tools", "name": "echo"}, server, None, "Timed out while listing.")
    assert "Timed out while listing." in failed.value.message


def test_required_needs_a_tool_one_of_the_servers_offers() -> None:
    """``tool_choice: "required"`` with only MCP tools: fine when any server offers a tool; else the listing's error
    when a server could not be listed (502), else a 400 at ``tool_choice`` saying why each offers none."""
    one = parse_mcp_tool(tool(allowed_tools=["echo"]), 0)
    two = parse_mcp_tool(tool(server_label="other"), 1)
    check_required([one, two], {"tools": {"tools": [{"name": "echo"}]}}, {"other": "Timed out."})
    check_required([one, two], {"tools": {"tools": []}, "other": {"tools": [{"name": "fail"}]}}, {})
    with pytest.raises(UpstreamError) as failed:
        check_required([one, two], {"tools": {"tools": [{"name": "fail"}]}}, {"other": "Timed out while listing."})
    assert "'other': Timed out while listing." in failed.value.message and "'tools'" not in failed.value.message
    with pytest.raises(InvalidRequest) as refused:
        check_required([one, two], {"tools": {"tools": [{"name": "fail"}]}, "other": {"tools": []}}, {})
    assert refused.value.param == "tool_choice"
    assert "'tools' lists 1 tool, none allowed by tools[0].allowed_tools" in refused.value.message
    assert "'other' lists no tools" in refused.value.message


def test_a_turn_offering_no_tool_sends_no_auto() -> None:
    """``auto`` over a chat API needs a tool: a turn whose only MCP server was not listed sends no tool_choice."""
    for choice, first in (("auto", True), ("auto", False), ("required", False)):
        parsed = request(tool(), tool_choice=choice)
        turn, _items, offered = turn_inputs(parsed, list(parsed.mcp), {}, [], first)
        assert (turn.tools, turn.tool_choice, offered) == ([], None, {})
    listed = {"tools": {"tools": [{"name": "echo"}]}}
    parsed = request(tool(), tool_choice="auto")
    assert turn_inputs(parsed, list(parsed.mcp), listed, [], True)[0].tool_choice == "auto"


def test_a_forced_tool_becomes_a_forced_function_or_required() -> None:
    one = parse_mcp_tool(tool(), 0)
    two = parse_mcp_tool(tool(server_label="other"), 1)
    listings = {
        "tools": {"tools": [{"name": "echo"}, {"name": "fail"}]},
        "other": {"tools": [{"name": "echo"}]},
    }
    offered = offered_tools([one, two], listings, ("get_weather",))
    assert forced_choice({"server_label": "tools", "name": "fail"}, offered) == (
        {"type": "function", "name": "tools__fail"},
        ["tools__fail"],
    )
    assert forced_choice({"server_label": "tools"}, offered) == ("required", ["tools__echo", "tools__fail"])
    assert forced_choice({"server_label": "other"}, offered) == (
        {"type": "function", "name": "other__echo"},
        ["other__echo"],
    )


@pytest.mark.parametrize(
    ("choice", "later"),
    [
        ("required", "auto"),
        ({"type": "function", "name": "get_weather"}, "auto"),
        ({"type": "mcp", "server_label": "tools"}, "auto"),
        ("auto", "auto"),
        ("none", "none"),
        (None, None),
    ],
)
def test_a_forcing_choice_binds_the_first_turn_only(choice: Any, later: Any) -> None:
    assert forces(choice) is (later == "auto" and choice != "auto")
    assert turn_choice(choice, has_tools=True) == later
    assert turn_choice(choice, has_tools=False) == (None if forces(choice) else choice)  # auto needs a tool


def test_an_approval_answers_the_forcing_choice_of_the_turn_that_asked() -> None:
    asked = [({"server_label": "tools", "name": "echo"}, False)]  # denied counts too: the model called it already
    assert answered("required", asked) and answered({"type": "function", "name": "get_weather"}, asked)
    assert answered({"type": "mcp", "server_label": "tools"}, asked)
    assert answered({"type": "mcp", "server_label": "tools", "name": "echo"}, asked)
    assert not answered({"type": "mcp", "server_label": "tools", "name": "fail"}, asked)
    assert not answered({"type": "mcp", "server_label": "other"}, asked)
    assert not answered("required", [])
