"""The MCP steps of one run of the Responses tool loop (SPEC §16.3): listing a server's tools (an ``mcp_list_tools``
item) and running an ``mcp_call`` item through the billed MCP call service, each recorded on its item and shown as
its stream events. ``LoopRun`` (``agent_run.py``) decides when a step runs; ``McpSteps`` runs it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from tollway.domain.mcp_calls import McpApp, McpCallFailed, McpServer
from tollway.domain.mcp_events import AgentEventStream
from tollway.domain.mcp_items import list_tools_item, listed_tools, result_text, tool_arguments
from tollway.domain.mcp_tools import McpTool
from tollway.errors import BillingError, TollwayError
from tollway.services.agents.mcp_calls import McpAppError, McpCalls
from tollway.services.inference.call import CallContext

_STEP_DIGITS: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
# Turns and calls after the first get the request id plus "-t"/"-c" and two base-36 digits (the 40 characters of
# holds.request_id), so a response makes at most this many MCP calls whatever ``max_tool_calls`` says.
MAX_STEPS: Final = 36 * 36 - 2


def step_id(request_id: str, kind: str, n: int) -> str:
    """The request id of a loop's turn (``kind`` "t") or MCP call ("c") number ``n``."""
    return f"{request_id}-{kind}{_STEP_DIGITS[n // 36]}{_STEP_DIGITS[n % 36]}"


@dataclass(frozen=True, slots=True)
class Server:
    """An ``mcp`` tool of the request, resolved: the app it names (or a priced-at-0 stand-in for an external
    server) and where its requests go, with which credential."""

    tool: McpTool
    app: McpApp
    target: McpServer


class McpSteps:
    """One request's MCP servers, their listings (the chain's, then this request's) and its ``mcp_call`` items.

    ``calls`` counts the calls sent (or refused before sending); ``cost`` is what they charged (nano-dollars);
    ``reached`` says whether one got as far as the MCP call service, after which a failure of the loop ends the
    response with its output rather than being the request's error answer. A call that money refused is left
    ``incomplete`` and its ``BillingError`` raised to the loop."""

    def __init__(
        self,
        mcp: McpCalls,
        ctx: CallContext,
        writer: AgentEventStream,
        servers: list[Server],
        listings: dict[str, dict[str, Any]],
    ) -> None:
        self.mcp, self.ctx, self.writer = mcp, ctx, writer
        self.servers = {server.tool.server_label: server for server in servers}
        self.listings = listings  # server label -> its mcp_list_tools item
        self.listing_errors: dict[str, str] = {}  # server label -> why this request could not list it
        self.calls = 0
        self.cost = 0
        self.reached = False

    async def list_server(self, server: Server) -> AsyncIterator[dict[str, Any]]:
        """List one server's tools into an ``mcp_list_tools`` item; a failure is the item's ``error``."""
        writer, item = self.writer, list_tools_item(server.tool.server_label)
        for event in writer.add(item) + writer.progress(item, "response.mcp_list_tools.in_progress"):
            yield event
        error: str | None = None
        try:
            listing = await self.mcp.list_server(self.ctx.principal, server.app, server.target)
        except McpCallFailed as exc:
            error = exc.message
        except McpAppError as exc:
            error = f"The MCP server answered tools/list with error {exc.code}: {exc.message}"
        except TollwayError as exc:  # a connection that expired on refresh, an unreachable authorization server
            error = exc.message
        if error is None:
            item["tools"] = listed_tools(listing)
            self.listings[server.tool.server_label] = item
        else:
            item["error"] = self.listing_errors[server.tool.server_label] = error
        for event in writer.close(item, f"response.mcp_list_tools.{'failed' if error else 'completed'}"):
            yield event

    async def call(self, item: dict[str, Any], iteration: int) -> AsyncIterator[dict[str, Any]]:
        """Run one ``mcp_call`` item through the billed MCP call service and record how it ended. ``iteration`` is
        the number of model turns run so far."""
        writer = self.writer
        for event in writer.progress(item, "response.mcp_call.in_progress"):
            yield event
        self.calls += 1
        server = self.servers.get(item["server_label"])
        arguments = tool_arguments(item["arguments"])
        item["error"] = self._refusal(item, server, arguments)
        if item["error"] is None and server is not None:
            await self._send(item, server, arguments, iteration)
        done = "completed" if item["status"] == "completed" else "failed"
        item["status"] = done
        for event in writer.close(item, f"response.mcp_call.{done}"):
            yield event

    def _refusal(self, item: dict[str, Any], server: Server | None, arguments: dict[str, Any] | None) -> str | None:
        """Why a call cannot be sent (a failed ``mcp_call``, not billed), or None."""
        label, name = item["server_label"], item["name"]
        if server is None:
            return f"The MCP server {label!r} is not among this request's tools."
        listing = self.listings.get(label)
        tools = listing.get("tools") or () if listing is not None else ()
        if not any(t["name"] == name and server.tool.offers(t) for t in tools):
            return f"The tool {name!r} is not offered by the MCP server {label!r}."
        if arguments is None:
            return "The tool call's arguments are not a JSON object."
        return None

    async def _send(
        self, item: dict[str, Any], server: Server, arguments: dict[str, Any] | None, iteration: int
    ) -> None:
        ctx = self.ctx  # the call belongs to the turn that asked for it (approved calls: the turn that follows)
        labels = dataclasses.replace(ctx.labels, iteration=max(iteration - 1, 0))
        call_ctx = dataclasses.replace(ctx, request_id=step_id(ctx.request_id, "c", self.calls), labels=labels)
        # Shielded: a client that leaves mid-call stops the loop after this call, which still settles.
        task = asyncio.ensure_future(self.mcp.call_priced(call_ctx, server.app, server.target, item["name"], arguments))
        try:
            result, charged = await asyncio.shield(task)
        except BillingError as exc:  # not run: money ends the loop; the item is closed with the response
            item["status"], item["error"] = "incomplete", f"Not run: {exc.message}"
            raise
        except McpAppError as exc:
            item["error"] = f"The MCP server answered with error {exc.code}: {exc.message}"
        except TollwayError as exc:  # a limit (timeout, size), unreachable, rate limited, not connected
            item["error"] = exc.message
        else:
            self.cost += charged
            if result.is_error:
                item["error"] = result_text(result.body) or "The tool reported an error."
            else:
                item["output"], item["status"] = result_text(result.body), "completed"
        self.reached = True  # from now on what was done is returned, whatever ends the loop

    def close_unrun(self) -> None:
        """At the end of the response: every ``mcp_call`` not run is ``incomplete``."""
        for item in self.writer.items:
            if item.get("type") == "mcp_call" and item.get("status") == "in_progress":
                item["status"] = "incomplete"
                item["error"] = item.get("error") or "Not run: the response ended first."
