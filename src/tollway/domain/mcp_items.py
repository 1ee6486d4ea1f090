"""The ``mcp_*`` items of the Responses tool loop (SPEC §16.3): ``mcp_list_tools``, ``mcp_call``,
``mcp_approval_request`` and ``mcp_approval_response``; a model turn's calls to MCP tools turned into them, the
approval responses of an input checked against the chain, and the model's view of a chain that holds them. Pure.

**The model's view of the chain.** The ``mcp_*`` items are kept as they are in the stored chain; each model turn
sees them as function calls and their results (``model_items``): an ``mcp_call`` is a ``function_call`` and a
``function_call_output`` (its output, or its error); an approved request is the call whose ``mcp_call`` answered it;
a denied one gets "denied" as its result; a request nobody answered yet, and every ``mcp_list_tools``, is left out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from tollway.domain.chat_messages import check_fields
from tollway.domain.mcp_tools import MAX_DESCRIPTION_CHARS, MAX_LISTED_TOOLS, Offered
from tollway.errors import InvalidRequest

_APPROVAL_RESPONSE_FIELDS: Final = frozenset({"type", "approval_request_id", "approve", "reason", "id"})
MCP_ITEM_TYPES: Final = frozenset({"mcp_list_tools", "mcp_call", "mcp_approval_request", "mcp_approval_response"})
DENIED: Final = "The user denied this tool call."


# -- items -------------------------------------------------------------------------------------------------------


def item_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


def list_tools_item(label: str) -> dict[str, Any]:
    return {"id": item_id("mcpl"), "type": "mcp_list_tools", "server_label": label, "tools": [], "error": None}


def listed_tools(listing: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An MCP ``tools/list`` result (JSON) as the tools of an ``mcp_list_tools`` item."""
    tools = []
    for tool in listing.get("tools") or ():
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            continue
        schema = tool.get("inputSchema", tool.get("input_schema"))
        tools.append(
            {
                "name": tool["name"],
                "description": tool.get("description"),
                "input_schema": schema if isinstance(schema, dict) else {"type": "object"},
                "annotations": tool.get("annotations") if isinstance(tool.get("annotations"), dict) else None,
            }
        )
    return tools[:MAX_LISTED_TOOLS]


def mcp_call_item(label: str, name: str, arguments: str, approval_request_id: str | None = None) -> dict[str, Any]:
    return {
        "id": item_id("mcp"),
        "type": "mcp_call",
        "server_label": label,
        "name": name,
        "arguments": arguments,
        "output": None,
        "error": None,
        "approval_request_id": approval_request_id,
        "status": "in_progress",
    }


def approval_request_item(label: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": item_id("mcpr"), "type": "mcp_approval_request", "server_label": label, "name": name,
            "arguments": arguments}  # fmt: skip


def intercept(output: list[dict[str, Any]], offered: Mapping[str, Offered]) -> list[dict[str, Any]]:
    """A model turn's output with its calls to MCP tools as ``mcp_call`` items to run (``in_progress``) or
    ``mcp_approval_request`` items; calls to the request's function tools stay ``function_call`` items."""
    out = []
    for item in output:
        target = offered.get(item.get("name", "")) if item.get("type") == "function_call" else None
        if target is None:
            out.append(item)
            continue
        label, name = target.server.server_label, target.tool["name"]
        maker = approval_request_item if target.needs_approval else mcp_call_item
        out.append(maker(label, name, item.get("arguments") or "{}"))
    return out


def tool_arguments(arguments: str) -> dict[str, Any] | None:
    """A call's JSON arguments as the object ``tools/call`` takes; None when they are not a JSON object."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def result_text(body: Mapping[str, Any]) -> str:
    """A ``tools/call`` result as the text the model reads: its text parts joined, other parts as JSON."""
    parts = []
    for part in body.get("content") or ():
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            parts.append(part["text"])
        else:
            parts.append(orjson.dumps(part).decode())
    if not parts and body.get("structuredContent") is not None:
        parts.append(orjson.dumps(body["structuredContent"]).decode())
    return "\n".join(parts)


# -- approval responses in the input ------------------------------------------------------------------------------


def parse_approval_response(item: dict[str, Any], path: str) -> dict[str, Any]:
    check_fields(item, _APPROVAL_RESPONSE_FIELDS, path, "an mcp_approval_response item")
    request_id = item.get("approval_request_id")
    if type(request_id) is not str or not 1 <= len(request_id) <= 128:
        what = "is required" if request_id is None else "must be the id of an mcp_approval_request"
        raise InvalidRequest(f"{path}.approval_request_id {what}.", f"{path}.approval_request_id")
    approve = item.get("approve")
    if type(approve) is not bool:
        raise InvalidRequest(f"{path}.approve must be true or false.", f"{path}.approve")
    reason = item.get("reason")
    if reason is not None and (type(reason) is not str or len(reason) > MAX_DESCRIPTION_CHARS):
        raise InvalidRequest(f"{path}.reason must be a string of at most {MAX_DESCRIPTION_CHARS} characters.",
                             f"{path}.reason")  # fmt: skip
    response = {"type": "mcp_approval_response", "approval_request_id": request_id, "approve": approve}
    if reason is not None:
        response["reason"] = reason
    return response


def pending_approvals(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ``mcp_approval_request`` items of a context that no response or call answered yet, by id."""
    pending: dict[str, dict[str, Any]] = {}
    for item in items:
        kind = item.get("type")
        if kind == "mcp_approval_request":
            pending[item["id"]] = item
        elif kind == "mcp_approval_response":
            pending.pop(item.get("approval_request_id", ""), None)
        elif kind == "mcp_call" and item.get("approval_request_id"):
            pending.pop(item["approval_request_id"], None)
    return pending


def check_approvals(previous: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bool]]:
    """Every ``mcp_approval_response`` of the new input answers a pending request of the chain (else 400 at
    ``input[i].approval_request_id``); returns (request, approved) in input order."""
    pending = pending_approvals(previous)
    answered = []
    for index, item in enumerate(new):
        if item.get("type") == "mcp_approval_request" and "id" in item:
            pending.setdefault(item["id"], item)
        if item.get("type") != "mcp_approval_response":
            continue
        request = pending.pop(item["approval_request_id"], None)
        if request is None:
            path = f"input[{index}].approval_request_id"
            raise InvalidRequest(
                f"{path} {item['approval_request_id'][:64]!r} does not match a pending mcp_approval_request of "
                "this response chain.",
                path,
            )
        answered.append((request, item["approve"]))
    return answered


# -- the model's view -----------------------------------------------------------------------------------------------


def call_result(item: Mapping[str, Any]) -> str:
    if item.get("output") is not None:
        return str(item["output"])
    return f"Error: {item.get('error') or 'the tool call did not complete.'}"


def model_items(items: list[dict[str, Any]], name: Callable[[str, str], str]) -> list[dict[str, Any]]:
    """The context as a model turn sees it (module docstring); ``name`` gives a tool's function name."""
    answers: dict[str, str] = {}
    for item in items:
        kind = item.get("type")
        if kind == "mcp_call" and item.get("approval_request_id"):
            answers[item["approval_request_id"]] = call_result(item)
        elif kind == "mcp_approval_response" and not item.get("approve"):
            reason = item.get("reason")
            answers[item["approval_request_id"]] = DENIED + (f" Reason: {reason}" if reason else "")
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind not in MCP_ITEM_TYPES:
            out.append(item)
            continue
        if kind == "mcp_call" and not item.get("approval_request_id"):
            call_id, result = item["id"], call_result(item)
        elif kind == "mcp_approval_request" and item.get("id") in answers:
            call_id, result = item["id"], answers[item["id"]]
        else:
            continue
        function = name(item["server_label"], item["name"])
        out.append({"type": "function_call", "call_id": call_id, "name": function, "arguments": item["arguments"]})
        out.append({"type": "function_call_output", "call_id": call_id, "output": result})
    return out


def listings_in(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The latest successful ``mcp_list_tools`` item of each server label in a context (reused along the chain)."""
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        if item.get("type") == "mcp_list_tools" and not item.get("error") and isinstance(item.get("tools"), list):
            found[str(item.get("server_label"))] = item
    return found
