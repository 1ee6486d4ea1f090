"""The Responses tool loop (SPEC §16.3): ``{type: "mcp"}`` tools run by the gateway, over every provider kind.

A request with ``mcp`` tools (or answering an approval request) runs here instead of as one model turn:

1. each server is resolved (a platform app with the caller's credential: 409 ``mcp_app_not_connected`` without a
   connection; any other URL only with ``mcp_external_servers`` and §11.5's rules, with the request's headers), then
   listed once per response chain: an ``mcp_list_tools`` item, reused along ``previous_response_id`` and threads;
2. calls approved by ``mcp_approval_response`` input items run first (denied ones are told to the model);
3. model turns follow, each its own call on the lifecycle (``ResponsesService.open_turn``: its own hold, settlement
   and usage row, ``iteration`` 0, 1, …; turn n > 0 under the request id ``<request_id>-t<n>``). The MCP tools are
   offered as function tools (``domain/mcp_tools.py`` names them), so the loop is Tollway's whatever the provider,
   openai providers called natively included (``mcp`` tools are never passed to OpenAI). A call to one is an
   ``mcp_call`` run through the billed MCP call service (``McpCalls.call_priced``, request id
   ``<request_id>-c<n>``) whose result goes back to the model, or, when approval is required, an
   ``mcp_approval_request`` that ends the response. A forcing ``tool_choice`` (``required``, a function, an MCP
   server's tool) binds the first turn only, later turns sending ``auto``: else the model would call a tool on every
   turn until ``max_tool_calls``;
4. the loop ends when the model answers without calling a tool, calls a ``function`` tool of the request (returned
   as usual), at ``max_tool_calls`` (``incomplete``), or when money refuses the next step (``incomplete``, the
   refusal's code as the reason: ``budget_exhausted``, ``wallet_insufficient``, or ``budget_suspended`` when the
   budget is suspended while the loop runs): whatever was done stays billed and is returned. A failure once
   something was billed ends the response ``failed`` with its output; before, it is the usual error answer.

``usage`` sums the turns; ``usage.cost`` is everything the request charged, MCP calls included. The output
(listings, calls, messages in order) is stored in the chain or appended to the thread. A client that leaves a
stream stops the loop after the running step, which settles normally (an MCP call in flight is shielded).
"""

from __future__ import annotations

from typing import Any

from tollway.domain.addresses import UnsafeUrl, check_url
from tollway.domain.mcp_calls import McpApp, McpServer
from tollway.domain.mcp_items import check_approvals
from tollway.domain.mcp_tools import McpTool
from tollway.domain.responses_request import ResponsesRequest
from tollway.domain.stored_responses import Owner
from tollway.domain.threads import ThreadLease
from tollway.errors import InvalidRequest
from tollway.services.agents.agent_run import LoopRun
from tollway.services.agents.mcp_calls import McpCalls
from tollway.services.agents.mcp_steps import Server
from tollway.services.inference.answers import Completion, StreamedCompletion
from tollway.services.inference.call import CallContext, CallLifecycle
from tollway.services.inference.responses import ResponsesService


class AgentLoop:
    def __init__(self, responses: ResponsesService, mcp: McpCalls, lifecycle: CallLifecycle) -> None:
        self.responses = responses
        self.mcp = mcp
        self._lifecycle = lifecycle
        self._allow_private = lifecycle.settings.allow_private_urls

    async def run(
        self,
        ctx: CallContext,
        request: ResponsesRequest,
        owner: Owner,
        previous: list[dict[str, Any]],
        lease: ThreadLease | None,
    ) -> Completion | StreamedCompletion:
        approvals = check_approvals(previous, request.input)
        servers = [await self._server(ctx, tool) for tool in request.mcp]
        loop = LoopRun(self.responses, self.mcp, ctx, request, owner, previous, lease, servers, approvals)
        return await (loop.stream() if request.stream else loop.json())

    async def _server(self, ctx: CallContext, tool: McpTool) -> Server:
        app = await self.mcp.app_by_url(ctx.principal, tool.server_url)
        if app is not None:  # one of this platform's apps: the caller's own credential (409 when not connected)
            return Server(tool, app, await self.mcp.server(ctx.principal, app))
        param = f"tools[{tool.index}].server_url"
        settings = (await self._lifecycle.catalog(ctx)).settings
        if not settings.mcp_external_servers:
            raise InvalidRequest(
                f"{param} is not one of this platform's MCP apps, and the platform does not allow external MCP "
                "servers (its setting mcp_external_servers is false).",
                param,
            )
        try:
            check_url(tool.server_url, allow_private=self._allow_private)
        except UnsafeUrl as exc:
            raise InvalidRequest(param + str(exc).removeprefix("url"), param) from None
        label = tool.server_label
        external = McpApp(f"external:{label}", label, label, tool.server_url, 0, None, False, external=True)
        return Server(tool, external, McpServer(tool.server_url, dict(tool.headers)))
