"""The chat-completions use case (SPEC §7.2, §7.3, §8): the chat pre-flight (step 3b, shared with Responses), then
the one call lifecycle with the chat adapter as its upstream step, answered in the OpenAI shape.

Streams settle in the relay's ``finally``, so a client that leaves or an upstream that breaks is still billed once,
for what was delivered.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from tollway.domain.catalog import Candidate
from tollway.domain.chat_request import ChatRequest
from tollway.domain.estimation import delivered_bytes
from tollway.domain.ports.providers import ChatStream, Providers
from tollway.domain.tariffs import TOKENS
from tollway.domain.upstream import ChatResult, StreamChunk, UpstreamCall
from tollway.domain.usage import CallStatus, usage_json, with_cost
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
from tollway.services.inference.streams import Opened, StreamTally, first_event, metered

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

    async def complete(self, ctx: CallContext, request: ChatRequest) -> Completion | StreamedCompletion:
        catalog = await self._calls.catalog(ctx)
        bound = request.prompt_token_bound(self._settings.image_token_allowance)
        plan = chat_plan(catalog, request, self._providers, bound)
        call = await self._calls.open(ctx, plan, TOKENS, token_demand(plan), self._health)
        with call:
            if request.stream:
                return await self._stream(call, request)
            return await self._complete(call, request)

    def _upstream(self, call: PaidCall, request: ChatRequest, candidate: Candidate) -> UpstreamCall:
        limit = call.plan.limits[candidate.model.id]
        return UpstreamCall(request, candidate, limit, call.ctx.request_id, call.ctx.session_id, call.deadline)

    async def _complete(self, call: PaidCall, request: ChatRequest) -> Completion:
        async def call_once(candidate: Candidate) -> ChatResult:
            return await self._providers.get(candidate.provider.kind).chat(self._upstream(call, request, candidate))

        candidate, result = await call.attempt(call_once)
        await call.confirm()
        choices: list[dict[str, Any]] = result.body["choices"]
        usage = metered(call.plan, result.usage, sum(delivered_bytes(c["message"]) for c in choices))
        finish = choices[0].get("finish_reason") if choices else None
        priced = call.settle(candidate, usage, Outcome(await call.ctx.delivered_status(), finish))
        body = {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": choices,
            "usage": with_cost(usage_json(usage.usage), priced.caller_nanos),
            **_extensions(result.body),
        }
        return Completion(body, candidate.provider.slug, call.headers)

    async def _stream(self, call: PaidCall, request: ChatRequest) -> StreamedCompletion:
        async def open_stream(candidate: Candidate) -> Opened:
            adapter = self._providers.get(candidate.provider.kind)
            stream = await adapter.chat_stream(self._upstream(call, request, candidate))
            return await first_event(stream, candidate, self._settings.first_byte_timeout_s)

        candidate, (stream, iterator, first) = await call.attempt(open_stream)
        await call.confirm(stream)
        events = _relay(call, request, candidate, stream, iterator, first)
        return StreamedCompletion(events, candidate.provider.slug, call.headers)


async def _relay(
    call: PaidCall,
    request: ChatRequest,
    candidate: Candidate,
    stream: ChatStream,
    iterator: AsyncIterator[StreamChunk],
    first: StreamChunk,
) -> AsyncIterator[dict[str, Any] | TollwayError]:
    """Chunks in the OpenAI shape (same id, created, model everywhere); settles exactly once in ``finally``."""
    base = {"id": _completion_id(), "object": "chat.completion.chunk", "created": int(time.time())}
    base["model"] = request.model
    usage_field = {"usage": None} if request.include_usage else {}
    tally = StreamTally(call.ctx.received_at)
    try:
        yield {
            **base,
            "choices": [
                {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                for i in range(request.n)
            ],
            **usage_field,
        }
        chunk: StreamChunk | None = first
        while chunk is not None:
            if chunk.usage is not None:
                tally.reported = chunk.usage
            for choice in chunk.chunk["choices"]:
                tally.delivered += delivered_bytes(choice["delta"])
                if choice.get("finish_reason"):
                    tally.finish = choice["finish_reason"]
            extensions = _extensions(chunk.chunk)
            if chunk.chunk["choices"]:
                _drop_empty_role_delta(chunk.chunk["choices"])
                if chunk.chunk["choices"]:
                    tally.first_token()
                    yield {**base, "choices": chunk.chunk["choices"], **usage_field, **extensions}
                elif extensions:
                    yield {**base, "choices": _empty_deltas(request.n), **usage_field, **extensions}
            elif extensions:
                # A chunk carrying only extension fields (ASI:One thought events) keeps one empty delta (§7.5).
                yield {**base, "choices": _empty_deltas(1), **usage_field, **extensions}
            call.checkpoint(candidate, tally.delivered, tally.reported)
            chunk = await anext(iterator, None)
        tally.status = CallStatus.SUCCESS
        if request.include_usage:
            usage = tally.metered(call.plan)
            cost = call.price(candidate, usage).caller_nanos  # what the ``finally`` below settles
            yield {**base, "choices": [], "usage": with_cost(usage_json(usage.usage), cost)}
    except UpstreamError as error:
        tally.error_code = error.code
        yield error
    finally:
        stream.close()
        tally.settle(call, candidate)


def _completion_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


_RESERVED_KEYS = frozenset({"id", "object", "created", "model", "choices", "usage"})


def _extensions(upstream: dict[str, Any]) -> dict[str, Any]:
    """Top-level fields an adapter chose to keep (ASI:One's thought, executed_tool_calls, ...), §7.3, §7.5."""
    if len(upstream) == 1:
        return {}
    return {k: v for k, v in upstream.items() if k not in _RESERVED_KEYS}


def _empty_deltas(count: int) -> list[dict[str, Any]]:
    return [{"index": i, "delta": {}, "logprobs": None, "finish_reason": None} for i in range(count)]


def _drop_empty_role_delta(choices: list[dict[str, Any]]) -> None:
    """Our own first chunk carries the role; an upstream's role-only opening delta would repeat it."""
    choices[:] = [
        c
        for c in choices
        if c.get("finish_reason")
        or c.get("logprobs")
        or any(k != "role" and v not in (None, "") for k, v in c["delta"].items())
    ]
