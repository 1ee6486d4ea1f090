"""The chat-completions use case (SPEC §7.2, §7.3, §8): the chat pre-flight (step 3b, shared with Responses), then
the one call lifecycle with the chat adapter as its upstream step, answered in the OpenAI shape.

A stream checkpoints before the events of each chunk are sent and settles before its terminal events (both are in
the journal before the client sees them, SPEC §9.4); a client that leaves or an upstream that breaks is settled
from the relay's ``finally``, billed once for what was delivered, and a client that left before the first event (the
relay never started) is settled for its prompt when the answer is over (``Unrelayed``, ``StreamedCompletion.ended``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from tollway.domain.catalog import Candidate
from tollway.domain.chat_request import ChatRequest
from tollway.domain.chat_shapes import OPENAI_CHAT, ChatShape, ChunkShaper, has_output
from tollway.domain.estimation import delivered_bytes
from tollway.domain.ports.providers import ChatStream, Providers
from tollway.domain.tariffs import TOKENS
from tollway.domain.upstream import ChatResult, StreamChunk, UpstreamCall
from tollway.domain.usage import CallStatus
from tollway.errors import BelowMinValue, ModelNotFound, TollwayError, UpstreamError
from tollway.services.inference.answers import Completion, StreamedCompletion
from tollway.services.inference.breaker import DeploymentHealth
from tollway.services.inference.call import (
    CallContext,
    CallLifecycle,
    Outcome,
    PaidCall,
    Plan,
    choose,
    token_demand,
)
from tollway.services.inference.routing import PlatformCatalog
from tollway.services.inference.streams import Opened, StreamTally, Unrelayed, first_event, metered

__all__ = ["ChatCompletions", "chat_plan"]


def chat_plan(
    catalog: PlatformCatalog,
    request: ChatRequest,
    providers: Providers,
    prompt_bound: int,
    limit_param: str | None = None,
    also: Callable[[Candidate], TollwayError | None] | None = None,
) -> Plan:
    """Steps 3b and 4 for a chat-shaped request: the usable rows of the slug minus those whose minimum output or
    parameter support rule them out. Responses name their own output-limit field ``limit_param`` and add the
    refusals of their own parameters (``also``)."""
    usable = [c for c in catalog.candidates(request.model) if providers.supports(c.provider.kind)]
    if not usable:
        raise ModelNotFound(f"The model '{request.model}' does not exist or is not enabled.", "model")

    def refusal(candidate: Candidate) -> TollwayError | None:
        limit = request.output_limit or candidate.model.max_output_tokens
        if limit < candidate.model.min_output:
            param = limit_param or (
                "max_completion_tokens" if "max_completion_tokens" in request.body else "max_tokens"
            )
            return BelowMinValue(
                f"{param} must be at least {candidate.model.min_output} for model '{request.model}'.", param
            )
        reason = providers.get(candidate.provider.kind).refusal(request, candidate)
        return reason if reason is not None or also is None else also(candidate)

    survivors = choose(usable, refusal)
    limits = {c.model.id: request.output_limit or c.model.max_output_tokens for c in survivors}
    markup = catalog.settings.markup_bps
    return Plan(request.model, survivors, limits, prompt_bound, markup, n=request.n, metadata=request.metadata)


class ChatCompletions:
    def __init__(self, lifecycle: CallLifecycle, providers: Providers, health: DeploymentHealth) -> None:
        self._calls = lifecycle
        self._providers = providers
        self._health = health  # per process: a circuit breaker per model row, a retry budget per provider
        self._settings = lifecycle.settings

    async def complete(
        self, ctx: CallContext, request: ChatRequest, shape: ChatShape = OPENAI_CHAT
    ) -> Completion | StreamedCompletion:
        """One chat call; ``shape`` renders the answer for the inbound API (/v1/chat/completions, /v1/messages)."""
        catalog = await self._calls.catalog(ctx)
        bound = request.prompt_token_bound(self._settings.image_token_allowance)
        plan = chat_plan(catalog, request, self._providers, bound)
        call = await self._calls.open(ctx, plan, TOKENS, token_demand(plan), self._health)
        with call:
            if request.stream:
                return await self._stream(call, request, shape)
            return await self._complete(call, request, shape)

    def _upstream(self, call: PaidCall, request: ChatRequest, candidate: Candidate) -> UpstreamCall:
        limit = call.plan.limits[candidate.model.id]
        return UpstreamCall(request, candidate, limit, call.ctx.request_id, call.ctx.session_id, call.deadline)

    async def _complete(self, call: PaidCall, request: ChatRequest, shape: ChatShape) -> Completion:
        async def call_once(candidate: Candidate) -> ChatResult:
            return await self._providers.get(candidate.provider.kind).chat(self._upstream(call, request, candidate))

        candidate, result = await call.attempt(call_once)
        await call.confirm()
        choices: list[dict[str, Any]] = result.body["choices"]
        usage = metered(call.plan, result.usage, sum(delivered_bytes(c["message"]) for c in choices))
        finish = choices[0].get("finish_reason") if choices else None
        priced = call.settle(candidate, usage, Outcome(await call.ctx.delivered_status(), finish))
        body = shape.completion(request, result, usage.usage, priced.caller_nanos)
        return Completion(body, candidate.provider.slug, call.headers)

    async def _stream(self, call: PaidCall, request: ChatRequest, shape: ChatShape) -> StreamedCompletion:
        async def open_stream(candidate: Candidate) -> Opened:
            adapter = self._providers.get(candidate.provider.kind)
            stream = await adapter.chat_stream(self._upstream(call, request, candidate))
            return await first_event(stream, candidate, self._settings.first_byte_timeout_s)

        candidate, (stream, iterator, first) = await call.attempt(open_stream)
        await call.confirm(stream)
        unrelayed = Unrelayed(call, candidate, stream)
        events = _relay(call, shape.chunks(request), candidate, stream, iterator, first, unrelayed)
        return StreamedCompletion(events, candidate.provider.slug, call.headers, ended=unrelayed.ended)


async def _relay(
    call: PaidCall,
    shaper: ChunkShaper,
    candidate: Candidate,
    stream: ChatStream,
    iterator: AsyncIterator[StreamChunk],
    first: StreamChunk,
    unrelayed: Unrelayed,
) -> AsyncIterator[dict[str, Any] | TollwayError]:
    """The shaped events of the stream; settles exactly once: before the closing events (or the error event), else
    in ``finally``."""
    tally = StreamTally(call.ctx.received_at)
    unrelayed.take()  # settled by this relay from here on
    try:
        call.opening(candidate)
        for event in shaper.opening():
            yield event
        chunk: StreamChunk | None = first
        while chunk is not None:
            if chunk.usage is not None:
                tally.reported = chunk.usage
            output = False
            for choice in chunk.chunk["choices"]:
                tally.delivered += delivered_bytes(choice["delta"])
                if choice.get("finish_reason"):
                    tally.finish = choice["finish_reason"]
                output = output or has_output(choice)
            if output:
                tally.first_token()
            call.checkpoint(candidate, tally.delivered, tally.reported)  # before these bytes leave
            for event in shaper.shape(chunk):
                yield event
            chunk = await anext(iterator, None)
        tally.status = CallStatus.SUCCESS
        priced = tally.settle(call, candidate)
        assert priced is not None, "nothing settles a stream before its end"
        for event in shaper.closing(tally.metered(call.plan).usage, priced.caller_nanos):
            yield event
    except UpstreamError as error:
        tally.error_code = error.code
        tally.settle(call, candidate)
        yield error
    finally:
        stream.close()
        tally.settle(call, candidate)
