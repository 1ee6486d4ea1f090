"""What the model sees on one turn of the Responses tool loop (SPEC §16.3): the request's function tools plus the
MCP tools offered as function tools (``mcp_tools.py`` names them), the context with ``mcp_*`` items as function calls
and results, and the turn's ``tool_choice``. Pure.

**A forcing ``tool_choice``** (``"required"``, ``{"type": "function"}``, ``{"type": "mcp"}``) binds the loop's first
model turn only, as OpenAI applies ``tool_choice`` to the model's first choice: later turns send ``auto``, so that the
model can answer and the loop end (forced on every turn, it would call a tool until ``max_tool_calls``). A request
that answers an approval request the forced turn asked for starts with a free turn too: the model called the tool
already, and forcing it again would only ask for another call and another approval. A turn that offers no tool at all
(its only MCP servers could not be listed) sends no ``auto``, which chat APIs refuse without tools; ``"required"``
with nothing to require never reaches a turn (``mcp_tools.check_required``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tollway.domain.mcp_items import model_items
from tollway.domain.mcp_tools import (
    McpTool,
    Offered,
    forced_choice,
    function_name,
    function_tool,
    mcp_choice,
    offered_tools,
)
from tollway.domain.responses_request import ResponsesRequest


def forces(choice: object) -> bool:
    """Whether a ``tool_choice`` forces a tool call: ``"required"``, ``{"type": "function"}`` or ``{"type": "mcp"}``."""
    return choice == "required" or (isinstance(choice, dict) and choice.get("type") in ("function", "mcp"))


def turn_choice(choice: str | dict[str, Any] | None, has_tools: bool) -> str | dict[str, Any] | None:
    """The ``tool_choice`` of a turn that is not forced: a forcing choice becomes ``"auto"`` (None when the turn
    offers no tool, as ``auto`` needs one); other choices (``auto``, ``none``) hold for every turn."""
    if not forces(choice):
        return choice
    return "auto" if has_tools else None


def answered(choice: object, approvals: list[tuple[dict[str, Any], bool]]) -> bool:
    """Whether the request answers an approval request for the forced tool (for ``required`` or a function: for any
    tool), approved or denied."""
    forced = mcp_choice(choice)
    if forced is None:
        return bool(approvals)
    label, name = forced["server_label"], forced.get("name")
    return any(asked["server_label"] == label and name in (None, asked["name"]) for asked, _approved in approvals)


def turn_inputs(
    request: ResponsesRequest,
    servers: list[McpTool],
    listings: Mapping[str, dict[str, Any]],
    context: list[dict[str, Any]],
    first: bool,
) -> tuple[ResponsesRequest, list[dict[str, Any]], dict[str, Offered]]:
    """The request as the model sees it on a turn (``first``: the turn a forcing ``tool_choice`` binds), its
    context items, and the MCP tools offered, by function name. ``tool_choice: {"type": "mcp"}`` becomes a forced
    function, or ``required`` with only that server's tools offered on that turn (``forced_choice``)."""
    offered = offered_tools(servers, listings, request.tool_names)
    names = {(o.server.server_label, o.tool["name"]): name for name, o in offered.items()}
    tools = request.tools + [function_tool(name, tool) for name, tool in offered.items()]
    choice, mcp = request.tool_choice, mcp_choice(request.tool_choice)
    if not first:
        choice = turn_choice(choice, bool(tools))
    elif mcp is not None:
        choice, forced = forced_choice(mcp, offered)
        if choice == "required":  # one of the server's tools: only those are offered on this turn
            tools = [tool for tool in tools if tool["name"] in forced]
    if choice == "auto" and not tools:
        choice = None  # no server offered a tool (a failed listing): ``auto`` needs one, and means the same without
    turn_request = dataclasses.replace(
        request,
        tools=tools,
        tool_names=tuple(tool["name"] for tool in tools),
        tool_choice=choice,
        mcp=(),
        declared_tools=None,
    )
    items = model_items(context, lambda label, tool: names.get((label, tool)) or function_name(label, tool))
    return turn_request, items, offered
