"""One request's run of the Responses tool loop (SPEC §16.3; the design is in ``agent_loop.py``): the MCP listings,
the approved calls, the model turns (JSON or streamed into one event sequence) and their MCP calls, the end and
the stored result. The MCP steps themselves (a listing, a call) are run by ``McpSteps`` (``mcp_steps.py``)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

from tollway.domain.catalog import Candidate
from tollway.domain.mcp_events import AgentEventStream
from tollway.domain.mcp_items import intercept, listings_in, mcp_call_item
from tollway.domain.mcp_tools import MAX_TOOL_CALLS_DEFAULT, Offered, check_forced, check_required, mcp_choice
from tollway.domain.mcp_turns import answered, turn_inputs
from tollway.domain.pricing import Usage
from tollway.domain.responses_items import output_as_input
from tollway.domain.responses_output import status_of
from tollway.domain.responses_request import ResponsesRequest
from tollway.domain.stored_responses import Owner
from tollway.domain.threads import ThreadLease
from tollway.domain.upstream import StreamChunk
from tollway.domain.usage import CallStatus
from tollway.errors import BillingError, TollwayError, UpstreamError
from tollway.services.agents.mcp_calls import McpCalls
from tollway.services.agents.mcp_steps import MAX_STEPS, McpSteps, Server, step_id
from tollway.services.inference.answers import Completion, StreamedCompletion
from tollway.services.inference.call import CallContext
from tollway.services.inference.responses import ResponsesService, ResponseTurn, chunk_events, skeleton
from tollway.services.inference.streams import StreamTally

log = logging.getLogger("tollway.agents")


def _add(total: Usage, usage: Usage) -> Usage:
    reasoning = None
    if total.reasoning_tokens is not None or usage.reasoning_tokens is not None:
        reasoning = (total.reasoning_tokens or 0) + (usage.reasoning_tokens or 0)
    return Usage(
        total.prompt_tokens + usage.prompt_tokens,
        total.completion_tokens + usage.completion_tokens,
        total.cached_tokens + usage.cached_tokens,
        reasoning,
        total.cache_write_tokens + usage.cache_write_tokens,
    )


class LoopRun:
    """One request's loop: its output (kept by ``AgentEventStream`` in both modes), totals and end."""

    def __init__(
        self,
        responses: ResponsesService,
        mcp: McpCalls,
        ctx: CallContext,
        request: ResponsesRequest,
        owner: Owner,
        previous: list[dict[str, Any]],
        lease: ThreadLease | None,
        servers: list[Server],
        approvals: list[tuple[dict[str, Any], bool]],
    ) -> None:
        self.responses = responses
        self.ctx, self.request, self.owner, self.lease = ctx, request, owner, lease
        self.context = previous + request.input
        self.approvals = approvals
        self.writer = AgentEventStream(skeleton(request, ctx.labels), summary=request.reasoning_summary is not None)
        self.steps = McpSteps(mcp, ctx, self.writer, servers, listings_in(self.context))
        self.max_calls = min(request.options.max_tool_calls or MAX_TOOL_CALLS_DEFAULT, MAX_STEPS)
        self.iteration = 0  # model turns settled so far
        self.usage = Usage(0, 0)
        self.cost = 0  # what the model turns charged (the MCP calls' is ``steps.cost``)
        self.end: tuple[str, dict[str, str] | None] | None = None  # (status, incomplete_details) once decided
        self.error: TollwayError | None = None
        self.offered: dict[str, Offered] = {}
        self._unrelayed: tuple[ResponseTurn, Candidate, Any] | None = None  # the opened first turn, until relayed

    # -- the two ways of answering ---------------------------------------------------------------------------------

    async def json(self) -> Completion:
        async for _ in self._prelude():
            pass
        provider, headers = "", dict[str, str]()
        while self.end is None:
            turn = await self._open()
            if turn is None:
                break
            headers = headers or turn.call.headers  # the first turn's admission and clamp
            try:
                with turn.call:
                    candidate, result = await turn.call.attempt(turn.call_once)
                    await turn.call.confirm()
            except TollwayError as error:
                self._failed(error)
                break
            provider = candidate.provider.slug
            settled = await turn.finish(candidate, result)
            self._tally(settled.usage, settled.cost_nanos)
            self.writer.start_turn(self.offered)
            for item in intercept(settled.output, self.offered):
                self.writer.add(item)
            async for _ in self._after_turn(settled.status, settled.incomplete):
                pass
            if self.end is None and self.ctx.client_gone is not None and await self.ctx.client_gone():
                self.end = ("incomplete", {"reason": "client_disconnected"})
        body = self._terminal_body()
        await self._keep(body)
        return Completion(body, provider, headers)

    async def stream(self) -> StreamedCompletion:
        """The prelude (``response.created``, the listings, the approved calls) and the first turn are run before
        the answer starts, so that their refusals are still plain error answers; the relay then sends the prelude
        and the turns.

        The prelude carries nothing billable of its own: listings are free, and each approved call is settled (its
        settlement written ahead to the journal, SPEC §9.4) before its events are even built. What is billable while
        the prelude goes out is the first turn, already opened upstream: its provisional journal record is written
        when it is confirmed (``_open_stream``), so before the prelude's first byte, as a plain stream writes it
        before its ``response.created``; and a client that leaves before the relay reaches the turn (before or during
        the prelude) has it settled as a stream cut before its output (``_ended``)."""
        prelude = self.writer.opening()  # numbered first: response.created leads the stream
        prelude += [event async for event in self._prelude()]
        first = await self._open_stream() if self.end is None else None
        self._unrelayed = first
        provider = first[1].provider.slug if first is not None else ""
        headers = first[0].call.headers if first is not None else {}
        return StreamedCompletion(self._relay(prelude, first), provider, headers, self._drained, self._ended)

    def _drained(self, error: TollwayError) -> list[dict[str, Any]]:
        return self.writer.fail(error.code, error.message)

    def _ended(self) -> None:
        """The stream is over (``StreamedCompletion.ended``, and the relay's ``finally``): a first turn the relay
        never reached (the client left before or during the prelude) settles as a stream cut before its output, its
        upstream closed; the thread is released at once. Idempotent: whatever the relay already did is not redone."""
        if self._unrelayed is not None:
            turn, candidate, opened = self._unrelayed
            self._unrelayed = None
            opened[0].close()
            self._settle(turn, candidate, StreamTally(self.ctx.received_at), self.writer.delivered_bytes)
        if self.lease is not None:  # cut off: no waiting inside a cancelled stream
            self.responses.threads.release_soon(self.lease)
            self.lease = None

    @property
    def billed(self) -> bool:
        """Whether anything was settled (a turn, or an MCP call that reached the call service): from then on,
        failures end the response."""
        return self.iteration > 0 or self.steps.reached

    # -- before the first turn ---------------------------------------------------------------------------------------

    async def _prelude(self) -> AsyncIterator[dict[str, Any]]:
        """Listings of servers the chain has not listed yet, then the calls approved in this input. A tool forced by
        ``tool_choice`` is checked against the listings before anything is called (a 400 or 502 answer), and so is
        ``"required"`` when only MCP servers could supply the tool it requires."""
        steps = self.steps
        for server in steps.servers.values():
            if server.tool.server_label not in steps.listings:
                async for event in steps.list_server(server):
                    yield event
        choice = mcp_choice(self.request.tool_choice)
        if choice is not None:
            label = choice["server_label"]
            check_forced(choice, steps.servers[label].tool, steps.listings.get(label), steps.listing_errors.get(label))
        request = self.request
        if request.tool_choice == "required" and not request.tools and not answered("required", self.approvals):
            servers = [server.tool for server in steps.servers.values()]
            check_required(servers, steps.listings, steps.listing_errors)
        for request_item, approved in self.approvals:
            if not approved or self.end is not None:
                continue
            label, name = request_item["server_label"], request_item["name"]
            item = mcp_call_item(label, name, request_item["arguments"], request_item["id"])
            for event in self.writer.add(item):
                yield event
            async for event in self._call(item):
                yield event

    # -- model turns ---------------------------------------------------------------------------------------------------

    def _turn_inputs(self) -> tuple[ResponsesRequest, list[dict[str, Any]]]:
        """The request and context as the model sees them this turn (``mcp_turns.turn_inputs``). A forcing
        ``tool_choice`` binds the loop's first turn only, unless this request answers the approval it asked for."""
        first = self.iteration == 0 and not answered(self.request.tool_choice, self.approvals)
        servers = [server.tool for server in self.steps.servers.values()]
        context = self.context + output_as_input(self.writer.output)
        request, items, self.offered = turn_inputs(self.request, servers, self.steps.listings, context, first)
        return request, items

    def _turn_ctx(self) -> CallContext:
        ctx, n = self.ctx, self.iteration
        request_id = ctx.request_id if n == 0 else step_id(ctx.request_id, "t", n)
        return dataclasses.replace(ctx, request_id=request_id, labels=dataclasses.replace(ctx.labels, iteration=n))

    async def _open(self) -> ResponseTurn | None:
        """The next turn, admitted and held; None when the loop ended instead (money, or a failure once billed)."""
        request, items = self._turn_inputs()
        try:
            return await self.responses.open_turn(self._turn_ctx(), request, items, self.owner)
        except TollwayError as error:
            self._failed(error)
            return None

    async def _open_stream(self) -> tuple[ResponseTurn, Candidate, Any] | None:
        turn = await self._open()
        if turn is None:
            return None
        try:
            with turn.call:
                candidate, opened = await turn.call.attempt(turn.open_stream)
                await turn.call.confirm(opened[0])
        except TollwayError as error:
            self._failed(error)
            return None
        # Before any byte of the answer that follows (for the first turn: before the prelude), a provisional journal
        # record, so that an instance killed from here on still bills the turn for its prompt (SPEC §9.4).
        turn.call.opening(candidate)
        self.writer.start_turn(self.offered)
        return turn, candidate, opened

    def _failed(self, error: TollwayError) -> None:
        """A step that could not run: before anything was billed, the request's error answer; after, the end."""
        if not self.billed:
            raise error
        if isinstance(error, BillingError):
            # Money refused the next step: the §3 code is the reason (budget_exhausted, wallet_insufficient, or
            # budget_suspended when the budget was suspended while the loop ran).
            self.end = ("incomplete", {"reason": error.code})
        else:
            self.end, self.error = ("failed", None), error

    def _tally(self, usage: Usage, cost_nanos: int) -> None:
        self.usage = _add(self.usage, usage)
        self.cost += cost_nanos
        self.iteration += 1

    async def _relay(
        self, prelude: list[dict[str, Any]], first: tuple[ResponseTurn, Candidate, Any] | None
    ) -> AsyncIterator[dict[str, Any] | TollwayError]:
        writer = self.writer
        try:
            for event in prelude:
                yield event
            opened = first
            while opened is not None:
                self._unrelayed = None  # the turn's relay settles it from here on
                async for event in self._relay_turn(*opened):
                    yield event
                if self.end is not None:
                    break
                opened = await self._open_stream()
            body_events = self._terminal_events()
            await self._keep(writer.response)
            await self._let_go()
            for event in body_events:
                yield event
        finally:
            self._ended()

    async def _keep(self, body: dict[str, Any]) -> None:
        """Store the response (or append it to its thread) unless it failed, as a failed stream is not (§16.4)."""
        if self.error is None:
            await self.responses.keep(self.owner, self.request, self.context, body, self.lease)
        else:
            log.info("tool loop failed after billing: %s", self.error.code, extra={"request_id": self.ctx.request_id})

    async def _let_go(self) -> None:
        if self.lease is not None:
            await self.responses.threads.release(self.lease)
            self.lease = None

    async def _relay_turn(self, turn: ResponseTurn, candidate: Candidate, opened: Any) -> AsyncIterator[dict[str, Any]]:
        """One streamed turn into the shared writer; it settles before the turn's last events, else in ``finally``
        (a client gone included). Its journal records come before the bytes they account for (SPEC §9.4): the turn's
        provisional record was written when it was opened (``_open_stream``), each checkpoint goes before the events
        of its chunk."""
        stream, iterator, first = opened
        call, writer = turn.call, self.writer
        tally = StreamTally(self.ctx.received_at)
        base = writer.delivered_bytes
        settled = False
        try:
            chunk: StreamChunk | None = first
            while chunk is not None:
                events = chunk_events(writer, tally, chunk)
                tally.delivered = writer.delivered_bytes - base
                call.checkpoint(candidate, tally.delivered, tally.reported)  # before these bytes leave
                for event in events:
                    yield event
                chunk = await anext(iterator, None)
            tally.status = CallStatus.SUCCESS
            status, incomplete = status_of(tally.finish)
            self._settle(turn, candidate, tally, base)
            settled = True
            for event in writer.end_turn("completed" if status == "completed" else "incomplete"):
                yield event
            async for event in self._after_turn(status, incomplete):
                yield event
        except UpstreamError as error:
            tally.error_code = error.code
            self._settle(turn, candidate, tally, base)
            settled = True
            self.end, self.error = ("failed", None), error
        finally:
            stream.close()
            if not settled:
                self._settle(turn, candidate, tally, base)

    def _settle(self, turn: ResponseTurn, candidate: Candidate, tally: StreamTally, base: int) -> None:
        tally.delivered = self.writer.delivered_bytes - base
        usage = tally.metered(turn.call.plan)
        self._tally(usage.usage, turn.call.price(candidate, usage).caller_nanos)
        tally.settle(turn.call, candidate)

    # -- after a turn: its MCP calls -------------------------------------------------------------------------------

    async def _after_turn(self, status: str, incomplete: dict[str, str] | None) -> AsyncIterator[dict[str, Any]]:
        items = self.writer.turn_items()
        if status != "completed":
            self.end = (status, incomplete)
            return
        pending = [i for i in items if i.get("type") == "mcp_call" and i.get("status") == "in_progress"]
        stops = any(i.get("type") in ("function_call", "mcp_approval_request") for i in items)
        for item in pending:
            if self.end is not None:
                break
            if self.steps.calls >= self.max_calls:
                item["status"], item["error"] = "incomplete", f"Not run: max_tool_calls ({self.max_calls}) reached."
                self.end = ("incomplete", {"reason": "max_tool_calls"})
                break
            async for event in self._call(item):
                yield event
        if self.end is None and (stops or not pending):
            self.end = ("completed", None)

    async def _call(self, item: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One ``mcp_call`` item run by ``McpSteps``; money refusing it ends the loop (``_failed``)."""
        try:
            async for event in self.steps.call(item, self.iteration):
                yield event
        except BillingError as error:
            self._failed(error)

    # -- the end -------------------------------------------------------------------------------------------------

    def _terminal_events(self) -> list[dict[str, Any]]:
        self.steps.close_unrun()
        cost = self.cost + self.steps.cost
        if self.error is not None:
            return self.writer.failed(self.error.code, self.error.message, self.usage, cost)
        status, incomplete = self.end or ("completed", None)
        return self.writer.complete(status, incomplete, self.usage, cost)

    def _terminal_body(self) -> dict[str, Any]:
        self._terminal_events()
        return self.writer.response
