"""The Responses API use case (SPEC §7.6): rebuild the context from ``previous_response_id`` or the agent thread
(SPEC §16.4, held for the whole request by ``services/agents/threads.py``), plan it as the chat request it translates
to, then run the one call lifecycle, calling a provider's own Responses API where its kind has one and its chat
adapter otherwise; answer in the Responses shape and store the result (a thread's response: appended to it).

Streams checkpoint and settle exactly like chat streams (before the bytes they account for go out, else in the
relay's ``finally``); a stored response is written before the terminal event (or the JSON answer) goes out, so a
GET right after a completed create finds it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tollway.domain.catalog import Candidate
from tollway.domain.chat_request import ChatRequest, parse_chat_request
from tollway.domain.estimation import delivered_bytes
from tollway.domain.ports.inference import ResponseRepository
from tollway.domain.ports.providers import ChatStream, Providers
from tollway.domain.pricing import Usage
from tollway.domain.responses_chat import CHAT_TO_RESPONSES_PARAMS, chat_body
from tollway.domain.responses_items import check_call_ids, output_as_input, prompt_token_bound, truncated
from tollway.domain.responses_output import ResponseEventStream, new_response_id, output_of_choice, usage_json
from tollway.domain.responses_params import LOGPROBS_INCLUDE
from tollway.domain.responses_request import ResponsesRequest
from tollway.domain.stored_responses import Owner, StoredResponse
from tollway.domain.tariffs import TOKENS
from tollway.domain.threads import ThreadLease
from tollway.domain.upstream import ChatResult, ResponsesCall, StreamChunk, UpstreamCall
from tollway.domain.usage import CallLabels, CallStatus, with_cost
from tollway.errors import (
    BelowMinValue,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    TollwayError,
    UnsupportedParameter,
    UpstreamError,
)
from tollway.services.agents.threads import Threads
from tollway.services.inference.answers import Completion, StreamedCompletion
from tollway.services.inference.breaker import DeploymentHealth
from tollway.services.inference.call import CallContext, CallLifecycle, Outcome, PaidCall, token_demand
from tollway.services.inference.chat import chat_plan
from tollway.services.inference.routing import PlatformCatalog
from tollway.services.inference.streams import Opened, StreamTally, Unrelayed, first_event, metered

if TYPE_CHECKING:
    from tollway.services.agents.agent_loop import AgentLoop

log = logging.getLogger("tollway.responses")


@dataclass(frozen=True, slots=True)
class TurnResult:
    """One settled model turn: its output items, status and what it was billed (the tool loop sums them)."""

    output: list[dict[str, Any]]
    status: str
    incomplete: dict[str, str] | None
    usage: Usage
    cost_nanos: int


class ResponsesService:
    def __init__(
        self,
        lifecycle: CallLifecycle,
        providers: Providers,
        health: DeploymentHealth,
        store: ResponseRepository,
        threads: Threads,
    ) -> None:
        self._calls = lifecycle
        self._providers = providers
        self._health = health  # shared with chat: the same rows, the same breakers
        self._store = store
        self._threads = threads
        self._settings = lifecycle.settings
        self.agents: AgentLoop | None = None  # the MCP tool loop (SPEC §16.3), attached by the composition root

    @property
    def threads(self) -> Threads:
        return self._threads

    # -- stored responses --------------------------------------------------------------------------------------

    async def get(self, ctx: CallContext, response_id: str) -> dict[str, Any]:
        return (await self._read(_owner(ctx), response_id, None)).body

    async def delete(self, ctx: CallContext, response_id: str) -> dict[str, Any]:
        try:
            deleted = await self._store.delete(_owner(ctx), response_id)
        except Exception as exc:
            raise ServiceUnavailable("The database is unreachable.") from exc
        if not deleted:
            raise NotFound(f"No response with id '{response_id[:64]}' was found.")
        return {"id": response_id, "object": "response", "deleted": True}

    async def _read(self, owner: Owner, response_id: str, param: str | None) -> StoredResponse:
        try:
            stored = await self._store.get(owner, response_id)
        except Exception as exc:
            raise ServiceUnavailable("The database is unreachable.") from exc
        if stored is None:
            raise NotFound(f"No response with id '{response_id[:64]}' was found.", param)
        return stored

    async def _save(self, owner: Owner, items: list[dict[str, Any]], body: dict[str, Any]) -> None:
        """Keep the result; a failure here loses only the stored copy, never the paid answer. The copy has no
        ``usage.cost``: that is what the create call charged, told once in its answer (SPEC §19)."""
        usage = body.get("usage")
        if isinstance(usage, dict) and "cost" in usage:
            body = {**body, "usage": {k: v for k, v in usage.items() if k != "cost"}}
        try:
            await self._store.save(owner, items, body)
        except Exception:
            log.warning("could not store response %s", body["id"], exc_info=True)

    async def keep(
        self,
        owner: Owner,
        request: ResponsesRequest,
        items: list[dict[str, Any]],
        body: dict[str, Any],
        lease: ThreadLease | None,
    ) -> None:
        """Store the result: a thread's response keeps its own request's input only (the thread holds the rest);
        any other keeps the whole context it was made with."""
        if lease is not None:
            await self._threads.append(lease, owner, request.input, body)
        elif request.store:
            await self._save(owner, items, body)

    # -- create ------------------------------------------------------------------------------------------------

    async def create(self, ctx: CallContext, request: ResponsesRequest) -> Completion | StreamedCompletion:
        owner = _owner(ctx)
        labels = CallLabels(response_id=new_response_id(), iteration=0, thread_id=request.thread_id)
        ctx = replace(ctx, labels=labels)
        if request.thread_id is None:
            previous: list[dict[str, Any]] = []
            if request.previous_response_id is not None:
                stored = await self._read(owner, request.previous_response_id, "previous_response_id")
                earlier = await self._threads.context_before(stored)
                previous = earlier + stored.input_items + output_as_input(stored.body["output"])
            return await self._create(ctx, request, owner, previous, None)
        # SPEC §16.4: one request at a time per thread, across instances; released once the response is stored.
        lease = await self._threads.claim(owner, request.thread_id, ctx.request_id, request.metadata)
        try:
            outcome = await self._create(ctx, request, owner, await self._threads.context(lease), lease)
        except Exception:
            await self._threads.release(lease)
            raise
        except BaseException:
            self._threads.release_soon(lease)
            raise
        if isinstance(outcome, Completion):
            await self._threads.release(lease)
        return outcome  # a stream releases the thread when it ends (``ResponseTurn._relay``, the tool loop's relay)

    async def _create(
        self,
        ctx: CallContext,
        request: ResponsesRequest,
        owner: Owner,
        previous: list[dict[str, Any]],
        lease: ThreadLease | None,
    ) -> Completion | StreamedCompletion:
        check_call_ids(previous, request.input)
        items = previous + request.input
        if request.mcp or any(item["type"] == "mcp_approval_response" for item in request.input):
            assert self.agents is not None, "the composition root attaches the tool loop"
            return await self.agents.run(ctx, request, owner, previous, lease)
        turn = await self.open_turn(ctx, request, items, owner, lease)
        call = turn.call
        with call:
            if request.stream:
                return await turn.stream()
            candidate, result = await call.attempt(turn.call_once)
            await call.confirm()
        body = await turn.settle(candidate, result)
        await self.keep(owner, request, items, body, lease)
        return Completion(body, candidate.provider.slug, call.headers)

    async def open_turn(
        self,
        ctx: CallContext,
        request: ResponsesRequest,
        items: list[dict[str, Any]],
        owner: Owner,
        lease: ThreadLease | None = None,
    ) -> ResponseTurn:
        """One model turn planned and opened on the lifecycle (admitted and held; its 402s and 429s raise here)."""
        catalog = await self._calls.catalog(ctx)
        chat = _as_chat(request, self._chat_items(request, items, catalog))
        # The hold counts the full context: openai providers get all of it (they truncate themselves).
        bound = prompt_token_bound(
            items, request.instructions, request.tools, request.text_format, self._settings.image_token_allowance
        )
        try:
            plan = chat_plan(
                catalog, chat, self._providers, bound, limit_param="max_output_tokens", also=self._refusal(request)
            )
        except (InvalidRequest, BelowMinValue) as error:
            raise _renamed(error, request) from None
        call = await self._calls.open(ctx, plan, TOKENS, token_demand(plan), self._health)
        return ResponseTurn(self, call, request, chat, items, owner, lease)

    def _chat_items(
        self, request: ResponsesRequest, items: list[dict[str, Any]], catalog: PlatformCatalog
    ) -> list[dict[str, Any]]:
        """The context sent over chat. With ``truncation: auto`` the oldest non-system items go until the prompt
        bound fits the smallest ``context_window`` among the slug's chat-served rows (one chat request serves every
        candidate, so it must fit the tightest; openai rows get the full context and truncate it themselves)."""
        if request.options.truncation != "auto":
            return items
        windows = [
            c.model.context_window
            for c in catalog.candidates(request.model)
            if c.model.context_window and self._providers.responses(c.provider.kind) is None
        ]
        if not windows:
            return items
        allowance = self._settings.image_token_allowance
        return truncated(items, min(windows), request.instructions, request.tools, request.text_format, allowance)

    def _refusal(self, request: ResponsesRequest) -> Callable[[Candidate], TollwayError | None]:
        """SPEC §7.6: over chat, ``prompt`` (a template only OpenAI can resolve) and ``moderation`` (a promise to
        block) cannot be ignored, so rows served over chat are ruled out for them."""
        refused = [name for name in ("prompt", "moderation") if request.body.get(name) is not None]

        def refusal(candidate: Candidate) -> TollwayError | None:
            if not refused or self._providers.responses(candidate.provider.kind) is not None:
                return None
            provider = candidate.provider
            return UnsupportedParameter(
                f"The parameter '{refused[0]}' is not supported by provider '{provider.slug}' ({provider.kind}), "
                "which Tollway serves through chat completions. Remove it, or use a model served by an openai "
                "provider.",
                refused[0],
            )

        return refusal


class ResponseTurn:
    """One model turn of a Responses request: its upstream step, its settlement, and its stream relay."""

    def __init__(
        self,
        service: ResponsesService,
        call: PaidCall,
        request: ResponsesRequest,
        chat: ChatRequest,
        items: list[dict[str, Any]],
        owner: Owner,
        lease: ThreadLease | None,
    ) -> None:
        self.service, self.call, self.request = service, call, request
        self.chat, self.items, self.owner = chat, items, owner
        self.lease = lease  # the thread this turn holds, released when its stream ends
        self._unrelayed: Unrelayed | None = None  # the opened stream, until its relay takes it
        self.writer = ResponseEventStream(
            skeleton(request, call.ctx.labels), summary=request.reasoning_summary is not None
        )

    async def call_once(self, candidate: Candidate) -> ChatResult:
        limit = self.call.plan.limits[candidate.model.id]
        native = self.service._providers.responses(candidate.provider.kind)
        if native is not None:
            return await native.create(ResponsesCall(self.request, self.items, candidate, limit, self.call.deadline))
        ctx = self.call.ctx
        upstream = UpstreamCall(self.chat, candidate, limit, ctx.request_id, ctx.session_id, self.call.deadline)
        return await self.service._providers.get(candidate.provider.kind).chat(upstream)

    async def open_stream(self, candidate: Candidate) -> Opened:
        limit = self.call.plan.limits[candidate.model.id]
        native = self.service._providers.responses(candidate.provider.kind)
        stream: ChatStream
        if native is not None:
            stream = await native.stream(ResponsesCall(self.request, self.items, candidate, limit, self.call.deadline))
        else:
            ctx = self.call.ctx
            upstream = UpstreamCall(self.chat, candidate, limit, ctx.request_id, ctx.session_id, self.call.deadline)
            stream = await self.service._providers.get(candidate.provider.kind).chat_stream(upstream)
        return await first_event(stream, candidate, self.service._settings.first_byte_timeout_s)

    async def finish(self, candidate: Candidate, result: ChatResult) -> TurnResult:
        """Settle the turn on its answer; its output items (a native answer's as given) and what it cost."""
        choice = result.body["choices"][0]
        output, status, incomplete = output_of_choice(choice, self.request.reasoning_summary is not None)
        if "output" in result.body:  # a native Responses answer: its output as given, unmodelled items included
            output = result.body["output"]
        usage = metered(self.call.plan, result.usage, delivered_bytes(choice["message"]))
        outcome = Outcome(await self.call.ctx.delivered_status(), choice.get("finish_reason"))
        priced = self.call.settle(candidate, usage, outcome)
        return TurnResult(output, status, incomplete, usage.usage, priced.caller_nanos)

    async def settle(self, candidate: Candidate, result: ChatResult) -> dict[str, Any]:
        turn = await self.finish(candidate, result)
        body = skeleton(self.request, self.call.ctx.labels)
        usage_body = with_cost(usage_json(turn.usage), turn.cost_nanos)
        body.update(status=turn.status, incomplete_details=turn.incomplete, output=turn.output, usage=usage_body)
        return body

    async def stream(self) -> StreamedCompletion:
        candidate, (stream, iterator, first) = await self.call.attempt(self.open_stream)
        await self.call.confirm(stream)
        self._unrelayed = Unrelayed(self.call, candidate, stream)
        events = self._relay(candidate, stream, iterator, first)
        return StreamedCompletion(events, candidate.provider.slug, self.call.headers, self.drained, self.ended)

    def ended(self) -> None:
        """The answer is over (``StreamedCompletion.ended``). A relay that never started (its client left before the
        first event) has its work done here: the turn settles as a stream cut before its output (for its prompt,
        SPEC §7.3), its upstream is closed, and the thread is released at once rather than when its lease expires.
        Otherwise the relay did all of it (or its ``finally`` does)."""
        if self._unrelayed is not None:
            self._unrelayed.ended()
        if self.lease is not None:
            self.service._threads.release_soon(self.lease)
            self.lease = None

    def drained(self, error: TollwayError) -> list[dict[str, Any]]:
        """A graceful shutdown cut the stream (SPEC §14.3): it ends with ``response.failed``, in sequence."""
        return self.writer.fail(error.code, error.message)

    async def _let_go(self) -> None:
        """Release the thread before the stream's last events, so that a client reacting to them finds it free."""
        if self.lease is not None:
            await self.service._threads.release(self.lease)
            self.lease = None  # only now: a release cut short is retried by ``finally``

    async def _relay(
        self, candidate: Candidate, stream: ChatStream, iterator: AsyncIterator[StreamChunk], first: StreamChunk
    ) -> AsyncIterator[dict[str, Any] | TollwayError]:
        """Hub chunks in, ``response.*`` events out; settles exactly once, before the terminal event (or in
        ``finally`` when cut off). A thread gets the response once it is complete or incomplete; a stream that
        failed or was cut off is not appended (SPEC §16.4)."""
        call, writer = self.call, self.writer
        tally = StreamTally(call.ctx.received_at)
        if self._unrelayed is not None:
            self._unrelayed.take()  # settled by this relay from here on
        try:
            call.opening(candidate)
            for event in writer.opening():
                yield event
            chunk: StreamChunk | None = first
            while chunk is not None:
                events = chunk_events(writer, tally, chunk)
                tally.delivered = writer.delivered_bytes
                call.checkpoint(candidate, tally.delivered, tally.reported)  # before these bytes leave
                for event in events:
                    yield event
                chunk = await anext(iterator, None)
            tally.delivered = writer.delivered_bytes
            tally.status = CallStatus.SUCCESS
            priced = tally.settle(call, candidate)
            assert priced is not None, "nothing settles a stream before its end"
            terminal = writer.finish(tally.finish, tally.metered(call.plan).usage, priced.caller_nanos)
            await self.service.keep(self.owner, self.request, self.items, writer.response, self.lease)
            await self._let_go()
            for event in terminal:
                yield event
        except UpstreamError as error:
            tally.error_code = error.code
            tally.delivered = writer.delivered_bytes
            tally.settle(call, candidate)
            await self._let_go()
            for event in writer.fail(error.code, error.message):
                yield event
        finally:
            stream.close()
            tally.delivered = writer.delivered_bytes
            tally.settle(call, candidate)
            if self.lease is not None:  # cut off (client gone, shutdown): no waiting inside a cancelled stream
                self.service._threads.release_soon(self.lease)


def chunk_events(writer: ResponseEventStream, tally: StreamTally, chunk: StreamChunk) -> list[dict[str, Any]]:
    """The ``response.*`` events of one hub chunk (its first choice); its usage, finish reason and first token are
    noted on the tally. Shared by a plain Responses stream and the streamed turns of the agent loop."""
    if chunk.usage is not None:
        tally.reported = chunk.usage
    events: list[dict[str, Any]] = []
    if "passthrough" in chunk.chunk:
        events += writer.passthrough(chunk.chunk["passthrough"])
    for choice in chunk.chunk["choices"]:
        if choice.get("index", 0) != 0:
            continue
        if choice.get("finish_reason"):
            tally.finish = choice["finish_reason"]
        fed = writer.feed(choice["delta"], choice.get("logprobs"))
        if fed:
            tally.first_token()
        events += fed
    return events


def _owner(ctx: CallContext) -> Owner:
    return Owner(ctx.platform_id, ctx.principal.end_user_id)


def skeleton(request: ResponsesRequest, labels: CallLabels) -> dict[str, Any]:
    """The result object before its output (SPEC §7.6), echoing the request's settings as OpenAI does."""
    text_format = request.text_format or {"type": "text"}
    assert labels.response_id is not None, "create() names the response before its first turn"
    body: dict[str, Any] = {
        "id": labels.response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "model": request.model,
        "output": [],
        "usage": None,
        "previous_response_id": request.previous_response_id,
        "incomplete_details": None,
        "error": None,
        "metadata": request.metadata,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "parallel_tool_calls": True if request.parallel_tool_calls is None else request.parallel_tool_calls,
        "reasoning": {"effort": request.reasoning_effort, "summary": request.reasoning_summary},
        "store": request.store,
        "temperature": request.temperature,
        "text": {"format": text_format, "verbosity": request.verbosity or "medium"},
        "truncation": request.options.truncation,
        "top_logprobs": request.options.top_logprobs,
        "max_tool_calls": request.options.max_tool_calls,
        "prompt_cache_key": request.options.prompt_cache_key,
        "safety_identifier": request.options.safety_identifier,
        "background": False,
        "tool_choice": request.tool_choice or "auto",
        "tools": request.echoed_tools,
        "top_p": request.top_p,
        "user": request.user,
    }
    if request.thread_id is not None:  # OpenAI's ``conversation`` object names the thread too
        body["thread_id"] = request.thread_id
        body["conversation"] = {"id": request.thread_id}
    return body


def _as_chat(request: ResponsesRequest, items: list[dict[str, Any]]) -> ChatRequest:
    """The hub request every adapter, the holds and the usage log work from."""
    try:
        return parse_chat_request(chat_body(request, items))
    except InvalidRequest as error:
        raise _renamed(error, request) from None


def _renamed(error: TollwayError, request: ResponsesRequest) -> TollwayError:
    """An error found on the chat form of the request, pointed at the Responses field it came from."""
    param = error.param
    if param is None:
        return error
    head, _, rest = param.partition(".")
    base = head.partition("[")[0]
    if base == "response_format":
        new = request.format_param
    elif base == "tools" and rest.startswith("function."):
        new = f"{head}.{rest.removeprefix('function.')}"
    elif param == "tool_choice.function.name":
        new = "tool_choice.name"
    elif param == "logprobs" and LOGPROBS_INCLUDE not in request.options.include:
        new = "top_logprobs"  # chat logprobs were asked for by top_logprobs alone
    else:
        new = CHAT_TO_RESPONSES_PARAMS.get(base, param)
    if new != param:
        error.message = error.message.replace(f"'{param}'", f"'{new}'").replace(f"{param} ", f"{new} ")
        error.args = (error.message,)
        error.param = new
    return error
