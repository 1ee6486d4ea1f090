"""The chat-completions use case (SPEC §7.2, §7.3, §8): candidates -> parameter checks -> wallet check ->
upstream call with fallback -> response in the OpenAI shape -> settlement recorded exactly once.

Streams settle in the generator's ``finally``, so a client that leaves or an upstream that breaks is still billed
once, for what was delivered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy.exc

from tollway.domain.catalog import Candidate
from tollway.domain.chat_request import ChatRequest
from tollway.domain.estimation import ceil_quarter, delivered_bytes, estimate_completion_tokens
from tollway.domain.pricing import Usage, cost_nanos, worst_case_prices
from tollway.domain.tenancy import Principal
from tollway.domain.usage import CallStatus, UsageRecord, usage_json
from tollway.errors import (
    BelowMinValue,
    ModelNotFound,
    ServiceUnavailable,
    TollwayError,
    UpstreamError,
    UpstreamTimeout,
)
from tollway.providers.base import ChatStream, StreamChunk, UpstreamCall
from tollway.providers.registry import AdapterRegistry
from tollway.services.attempts import with_fallback
from tollway.services.models import ModelCatalogView
from tollway.services.routing import CandidateRouter
from tollway.services.wallets import WalletGate
from tollway.settings import Settings
from tollway.storage.usage import UsageRecorder

log = logging.getLogger("tollway.inference")


@dataclass(frozen=True, slots=True)
class CallContext:
    principal: Principal
    request_id: str
    session_id: str | None
    received_at: float  # time.perf_counter() at receipt


@dataclass(slots=True)
class Completion:
    body: dict[str, Any]
    provider_slug: str


@dataclass(slots=True)
class StreamedCompletion:
    events: AsyncIterator[dict[str, Any] | TollwayError]
    provider_slug: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Plan:
    candidates: list[Candidate]
    limits: dict[str, int]  # model row id -> effective output limit per choice
    prompt_bound: int  # T_p before any context cap
    reserved: int = 0  # the worst case reserved on the wallet gate, given back at settlement


class InferenceService:
    def __init__(
        self,
        settings: Settings,
        router: CandidateRouter,
        recorder: UsageRecorder,
        wallets: WalletGate,
        adapters: AdapterRegistry,
    ) -> None:
        self._settings = settings
        self._router = router
        self._recorder = recorder
        self._wallets = wallets
        self._adapters = adapters
        self.models = ModelCatalogView(router, adapters)

    # -- pre-flight ------------------------------------------------------------------------------------------

    async def _plan(self, ctx: CallContext, request: ChatRequest) -> _Plan:
        assert ctx.principal.platform_id is not None
        try:
            catalog = await self._router.catalog(ctx.principal.platform_id)
        except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable("The database is unreachable.") from exc
        usable = [c for c in catalog.candidates(request.model) if self._adapters.supports(c.provider.kind)]
        if not usable:
            raise ModelNotFound(f"The model '{request.model}' does not exist or is not enabled.", "model")
        survivors: list[Candidate] = []
        limits: dict[str, int] = {}
        first_reason: TollwayError | None = None
        for candidate in usable:
            limit = request.output_limit or candidate.model.max_output_tokens
            reason: TollwayError | None = None
            if limit < candidate.model.min_output:
                param = "max_completion_tokens" if "max_completion_tokens" in request.body else "max_tokens"
                reason = BelowMinValue(
                    f"{param} must be at least {candidate.model.min_output} for model '{request.model}'.", param
                )
            else:
                reason = self._adapters.get(candidate.provider.kind).refusal(request, candidate)
            if reason is None:
                survivors.append(candidate)
                limits[candidate.model.id] = limit
            elif first_reason is None:
                first_reason = reason
        if not survivors:
            assert first_reason is not None
            raise first_reason
        return _Plan(survivors, limits, request.prompt_token_bound(self._settings.image_token_allowance))

    def _worst_case_cost(self, plan: _Plan, request: ChatRequest) -> int:
        worst = 0
        for candidate in plan.candidates:
            prompt = plan.prompt_bound
            if candidate.model.context_window is not None:
                prompt = min(prompt, candidate.model.context_window)
            usage = Usage(prompt, request.n * plan.limits[candidate.model.id])
            worst = max(worst, cost_nanos(usage, worst_case_prices(candidate.model.prices)))
        return worst

    async def _reserve(self, ctx: CallContext, plan: _Plan, request: ChatRequest) -> int:
        assert ctx.principal.platform_id is not None
        worst = self._worst_case_cost(plan, request)
        try:
            await self._wallets.reserve(ctx.principal.platform_id, worst)
        except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable("The database is unreachable.") from exc
        return worst

    # -- the call --------------------------------------------------------------------------------------------

    def _call(self, ctx: CallContext, request: ChatRequest, plan: _Plan, candidate: Candidate) -> UpstreamCall:
        deadline = asyncio.get_running_loop().time() + self._settings.total_timeout_s
        return UpstreamCall(
            request, candidate, plan.limits[candidate.model.id], ctx.request_id, ctx.session_id, deadline
        )

    async def complete(self, ctx: CallContext, request: ChatRequest) -> Completion | StreamedCompletion:
        plan = await self._plan(ctx, request)
        plan.reserved = await self._reserve(ctx, plan, request)
        try:
            return await self._call_upstream(ctx, request, plan)
        except BaseException:
            assert ctx.principal.platform_id is not None
            self._wallets.release(ctx.principal.platform_id, plan.reserved)
            raise

    async def _call_upstream(
        self, ctx: CallContext, request: ChatRequest, plan: _Plan
    ) -> Completion | StreamedCompletion:
        deadline = asyncio.get_running_loop().time() + self._settings.total_timeout_s

        def failed(candidate: Candidate, error: UpstreamError) -> None:
            self._record_failure(ctx, request, candidate, error)

        if request.stream:

            async def open_stream(candidate: Candidate) -> tuple[ChatStream, AsyncIterator[StreamChunk], StreamChunk]:
                stream = await self._adapters.get(candidate.provider.kind).chat_stream(
                    self._call(ctx, request, plan, candidate)
                )
                iterator = aiter(stream)
                try:
                    async with asyncio.timeout(self._settings.first_byte_timeout_s):
                        first = await anext(iterator)
                except TimeoutError as exc:
                    stream.close()
                    raise UpstreamTimeout(f"Upstream provider '{candidate.provider.slug}' sent no event.") from exc
                except StopAsyncIteration as exc:
                    stream.close()
                    raise UpstreamError(f"Upstream provider '{candidate.provider.slug}' sent an empty stream.") from exc
                except BaseException:
                    stream.close()
                    raise
                return stream, iterator, first

            candidate, (stream, iterator, first) = await with_fallback(plan.candidates, open_stream, failed, deadline)
            events = self._relay(ctx, request, plan, candidate, stream, iterator, first)
            return StreamedCompletion(events, candidate.provider.slug)

        async def call_once(candidate: Candidate) -> Any:
            return await self._adapters.get(candidate.provider.kind).chat(self._call(ctx, request, plan, candidate))

        candidate, result = await with_fallback(plan.candidates, call_once, failed, deadline)
        choices: list[dict[str, Any]] = result.body["choices"]
        usage, method = self._final_usage(plan, result.usage, sum(delivered_bytes(c["message"]) for c in choices))
        body = {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": choices,
            "usage": usage_json(usage),
            **_extensions(result.body),
        }
        finish = choices[0].get("finish_reason") if choices else None
        self._settle(ctx, request, candidate, usage, method, CallStatus.SUCCESS, finish, None, None, plan.reserved)
        return Completion(body, candidate.provider.slug)

    async def _relay(
        self,
        ctx: CallContext,
        request: ChatRequest,
        plan: _Plan,
        candidate: Candidate,
        stream: ChatStream,
        iterator: AsyncIterator[StreamChunk],
        first: StreamChunk,
    ) -> AsyncIterator[dict[str, Any] | TollwayError]:
        """Chunks in the OpenAI shape (same id, created, model everywhere); settles exactly once in ``finally``."""
        base = {"id": _completion_id(), "object": "chat.completion.chunk", "created": int(time.time())}
        base["model"] = request.model
        usage_field = {"usage": None} if request.include_usage else {}
        delivered = 0
        reported: Usage | None = None
        finish: str | None = None
        status = CallStatus.INTERRUPTED
        error_code: str | None = None
        ttft_ms: int | None = None
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
                    reported = chunk.usage
                for choice in chunk.chunk["choices"]:
                    delivered += delivered_bytes(choice["delta"])
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                extensions = _extensions(chunk.chunk)
                if chunk.chunk["choices"]:
                    _drop_empty_role_delta(chunk.chunk["choices"])
                    if chunk.chunk["choices"]:
                        if ttft_ms is None:
                            ttft_ms = int((time.perf_counter() - ctx.received_at) * 1000)
                        yield {**base, "choices": chunk.chunk["choices"], **usage_field, **extensions}
                    elif extensions:
                        yield {**base, "choices": _empty_deltas(request.n), **usage_field, **extensions}
                elif extensions:
                    # A chunk carrying only extension fields (ASI:One thought events) keeps one empty delta (§7.5).
                    yield {**base, "choices": _empty_deltas(1), **usage_field, **extensions}
                chunk = await anext(iterator, None)
            status = CallStatus.SUCCESS
            if request.include_usage:
                usage, _ = self._final_usage(plan, reported, delivered)
                yield {**base, "choices": [], "usage": usage_json(usage)}
        except UpstreamError as error:
            error_code = error.code
            yield error
        finally:
            stream.close()
            if status is CallStatus.INTERRUPTED and finish is None:
                finish = "stop"
            usage, method = self._final_usage(plan, reported, delivered)
            if status is CallStatus.INTERRUPTED and delivered == 0 and reported is None:
                usage, method = Usage(ceil_quarter(plan.prompt_bound), 0), "estimated"
            self._settle(ctx, request, candidate, usage, method, status, finish, error_code, ttft_ms, plan.reserved)

    # -- settlement ------------------------------------------------------------------------------------------

    def _final_usage(self, plan: _Plan, reported: Usage | None, delivered: int) -> tuple[Usage, str]:
        if reported is not None:
            return reported, "reported"
        return Usage(ceil_quarter(plan.prompt_bound), estimate_completion_tokens(delivered)), "estimated"

    def _settle(
        self,
        ctx: CallContext,
        request: ChatRequest,
        candidate: Candidate,
        usage: Usage,
        method: str,
        status: CallStatus,
        finish: str | None,
        error_code: str | None,
        ttft_ms: int | None,
        reserved: int | None,
    ) -> None:
        """Queue the settlement; ``reserved`` (None for failed attempts) turns into the cost on the wallet gate."""
        principal = ctx.principal
        assert principal.platform_id is not None
        cost = cost_nanos(usage, candidate.model.prices)
        if reserved is not None:
            self._wallets.settle(principal.platform_id, reserved, cost)
        record = UsageRecord(
            request_id=ctx.request_id,
            platform_id=principal.platform_id,
            end_user_id=principal.end_user_id,
            request_type="chat.completion",
            provider_id=candidate.provider.id,
            model=request.model,
            provider_model=candidate.model.upstream_model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            latency_ms=int((time.perf_counter() - ctx.received_at) * 1000),
            ttft_ms=ttft_ms,
            cost_nanos=cost,
            charged_nanos=cost if principal.end_user_id is not None else None,
            status=status,
            finish_reason=finish,
            error_code=error_code,
            token_count_method=method,
            session_id=ctx.session_id,
            metadata=request.metadata,
        )
        self._recorder.submit(record)

    def _record_failure(
        self, ctx: CallContext, request: ChatRequest, candidate: Candidate, error: UpstreamError
    ) -> None:
        """A failed attempt with no output: one log row, zero cost, nothing captured (§9.4)."""
        log.warning("upstream attempt failed: %s", error.message, extra={"request_id": ctx.request_id})
        self._settle(ctx, request, candidate, Usage(0, 0), "reported", CallStatus.ERROR, None, error.code, None, None)


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
