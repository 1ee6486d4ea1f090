"""The chat-completions use case (SPEC §7.2, §7.3, §8): candidates -> parameter checks -> holds -> upstream call
with fallback -> response in the OpenAI shape -> settlement exactly once.

Streams settle in the generator's ``finally``, so a client that leaves or an upstream that breaks is still billed
once, for what was delivered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy.exc

from tollway.domain.catalog import Candidate
from tollway.domain.chat_request import ChatRequest
from tollway.domain.estimation import ceil_quarter, delivered_bytes, estimate_completion_tokens
from tollway.domain.pricing import Usage
from tollway.domain.ratelimit import TokenDemand
from tollway.domain.usage import CallStatus, usage_json
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
from tollway.services.billing import Billing, CallContext, Plan
from tollway.services.breaker import DeploymentHealth
from tollway.services.models import ModelCatalogView
from tollway.services.ratelimit import Admission, RateLimiter
from tollway.services.routing import CandidateRouter
from tollway.settings import Settings

__all__ = ["CallContext", "Completion", "InferenceService", "StreamedCompletion"]

log = logging.getLogger("tollway.inference")
T = TypeVar("T")


@dataclass(slots=True)
class Completion:
    body: dict[str, Any]
    provider_slug: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class StreamedCompletion:
    events: AsyncIterator[dict[str, Any] | TollwayError]
    provider_slug: str
    headers: dict[str, str] = field(default_factory=dict)
    # The closing events of a stream cut by a graceful shutdown (Responses: ``response.failed``); None: an error.
    on_drain: Callable[[TollwayError], list[dict[str, Any]]] | None = None


class InferenceService:
    def __init__(
        self,
        settings: Settings,
        router: CandidateRouter,
        billing: Billing,
        limiter: RateLimiter,
        adapters: AdapterRegistry,
    ) -> None:
        self._settings = settings
        self._router = router
        self._billing = billing
        self._limiter = limiter
        self._adapters = adapters
        self._health = DeploymentHealth()  # per process: a circuit breaker per model row, a retry budget per provider
        self.models = ModelCatalogView(router, adapters)

    # -- pre-flight ------------------------------------------------------------------------------------------

    async def plan(
        self, ctx: CallContext, request: ChatRequest, *, limit_param: str | None = None, prompt_bound: int | None = None
    ) -> Plan:
        """Steps 3b and 4. Other request types (Responses) name their own output-limit field ``limit_param`` and
        bring their own prompt bound."""
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
                param = limit_param or (
                    "max_completion_tokens" if "max_completion_tokens" in request.body else "max_tokens"
                )
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
        bound = prompt_bound or request.prompt_token_bound(self._settings.image_token_allowance)
        return Plan(survivors, limits, bound, catalog.settings.markup_bps)

    # -- the call --------------------------------------------------------------------------------------------

    @staticmethod
    def _call(
        ctx: CallContext, request: ChatRequest, plan: Plan, candidate: Candidate, deadline: float
    ) -> UpstreamCall:
        """Every attempt of a request shares its one deadline: retries never stretch the total timeout (§14.1)."""
        return UpstreamCall(
            request, candidate, plan.limits[candidate.model.id], ctx.request_id, ctx.session_id, deadline
        )

    async def complete(self, ctx: CallContext, request: ChatRequest) -> Completion | StreamedCompletion:
        plan = await self.plan(ctx, request)
        admission = await self.admit(ctx, request, plan)
        try:
            await self._billing.hold(ctx, request, plan)
        except BaseException:
            self._limiter.refund(admission)  # a refusal in steps 6-9 returns the TPM reservation (§8)
            raise
        try:
            return await self._call_upstream(ctx, request, plan, admission)
        except BaseException:
            self.release(plan, admission)
            raise

    async def hold(self, ctx: CallContext, request: ChatRequest, plan: Plan, admission: Admission) -> None:
        """Steps 6-8; a refusal returns the TPM reservation (§8)."""
        try:
            await self._billing.hold(ctx, request, plan)
        except BaseException:
            self._limiter.refund(admission)
            raise

    async def confirm(self, plan: Plan, stream: ChatStream | None = None) -> None:
        """Before any answer reaches the client its hold is durable (``Billing.confirm``); an opened stream is
        closed when it is not."""
        try:
            await self._billing.confirm(plan)
        except BaseException:
            if stream is not None:
                stream.close()
            raise

    def release(self, plan: Plan, admission: Admission) -> None:
        """The call failed before any output: free the hold and the TPM reservation."""
        self._billing.release(plan)
        self._limiter.refund(admission)

    async def admit(self, ctx: CallContext, request: ChatRequest, plan: Plan) -> Admission:
        """Step 5: RPM, RPD, TPM for end users; the TPM estimate is the hold's T_p + n × output limit (§10)."""
        assert ctx.principal.platform_id is not None
        demand = TokenDemand(
            prompt_tokens=max(
                min(plan.prompt_bound, c.model.context_window or plan.prompt_bound) for c in plan.candidates
            ),
            n=request.n,
            output_limit=max(plan.limits.values()),
            min_output=max(c.model.min_output for c in plan.candidates),
        )
        admission = await self._limiter.admit(ctx.principal.platform_id, ctx.principal.end_user_id, demand)
        if admission.clamped_output_limit is not None:
            plan.rate_clamp = admission.clamped_output_limit
            plan.clamp(admission.clamped_output_limit)
        return admission

    def settle(
        self,
        ctx: CallContext,
        request: ChatRequest,
        plan: Plan,
        admission: Admission,
        candidate: Candidate,
        usage: Usage,
        method: str,
        outcome: tuple[CallStatus, str | None, str | None],
        ttft_ms: int | None,
    ) -> None:
        """Step 10, and the TPM reservation corrected to the tokens actually used."""
        self._billing.settle(ctx, request, plan, candidate, usage, method, outcome, ttft_ms)
        self._limiter.adjust(admission, usage.total_tokens)

    # -- shared with the Responses API (services/responses.py) -----------------------------------------------

    def deadline(self) -> float:
        """Every attempt of a request shares its one deadline: retries never stretch the total timeout (§14.1)."""
        return asyncio.get_running_loop().time() + self._settings.total_timeout_s

    def failure_logger(
        self, ctx: CallContext, request: ChatRequest, plan: Plan
    ) -> Callable[[Candidate, UpstreamError], None]:
        def failed(candidate: Candidate, error: UpstreamError) -> None:
            log.warning("upstream attempt failed: %s", error.message, extra={"request_id": ctx.request_id})
            self._billing.log_failure(ctx, request, plan, candidate, error.code)

        return failed

    async def with_fallback(
        self,
        plan: Plan,
        attempt: Callable[[Candidate], Awaitable[T]],
        on_failure: Callable[[Candidate, UpstreamError], None],
        deadline: float,
    ) -> tuple[Candidate, T]:
        """Step 9: retries and fallback over the plan's candidates, through this process's circuit breakers."""
        return await with_fallback(plan.candidates, attempt, on_failure, deadline, health=self._health)

    async def first_event(
        self, stream: ChatStream, candidate: Candidate
    ) -> tuple[ChatStream, AsyncIterator[StreamChunk], StreamChunk]:
        """Wait for the stream's first event (first-byte timeout): until then a failure can still fall back."""
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

    def checkpoint(self, plan: Plan, candidate: Candidate, delivered: int, usage: Usage | None) -> None:
        self._billing.checkpoint(plan, candidate, delivered, usage)

    @property
    def adapters(self) -> AdapterRegistry:
        return self._adapters

    @property
    def settings(self) -> Settings:
        return self._settings

    async def _call_upstream(
        self, ctx: CallContext, request: ChatRequest, plan: Plan, admission: Admission
    ) -> Completion | StreamedCompletion:
        deadline = self.deadline()
        failed = self.failure_logger(ctx, request, plan)

        if request.stream:

            async def open_stream(candidate: Candidate) -> tuple[ChatStream, AsyncIterator[StreamChunk], StreamChunk]:
                stream = await self._adapters.get(candidate.provider.kind).chat_stream(
                    self._call(ctx, request, plan, candidate, deadline)
                )
                return await self.first_event(stream, candidate)

            candidate, (stream, iterator, first) = await with_fallback(
                plan.candidates, open_stream, failed, deadline, health=self._health
            )
            await self.confirm(plan, stream)
            events = self._relay(ctx, request, plan, admission, candidate, stream, iterator, first)
            return StreamedCompletion(events, candidate.provider.slug, {**admission.headers, **_clamp_header(plan)})

        async def call_once(candidate: Candidate) -> Any:
            return await self._adapters.get(candidate.provider.kind).chat(
                self._call(ctx, request, plan, candidate, deadline)
            )

        candidate, result = await with_fallback(plan.candidates, call_once, failed, deadline, health=self._health)
        await self.confirm(plan)
        choices: list[dict[str, Any]] = result.body["choices"]
        usage, method = self.final_usage(plan, result.usage, sum(delivered_bytes(c["message"]) for c in choices))
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
        outcome = (await ctx.delivered_status(), finish, None)
        self.settle(ctx, request, plan, admission, candidate, usage, method, outcome, None)
        return Completion(body, candidate.provider.slug, {**admission.headers, **_clamp_header(plan)})

    async def _relay(
        self,
        ctx: CallContext,
        request: ChatRequest,
        plan: Plan,
        admission: Admission,
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
                self._billing.checkpoint(plan, candidate, delivered, reported)
                chunk = await anext(iterator, None)
            status = CallStatus.SUCCESS
            if request.include_usage:
                usage, _ = self.final_usage(plan, reported, delivered)
                yield {**base, "choices": [], "usage": usage_json(usage)}
        except UpstreamError as error:
            error_code = error.code
            yield error
        finally:
            stream.close()
            if status is CallStatus.INTERRUPTED and finish is None:
                finish = "stop"
            usage, method = self.final_usage(plan, reported, delivered)
            if status is CallStatus.INTERRUPTED and delivered == 0 and reported is None:
                usage, method = Usage(ceil_quarter(plan.prompt_bound), 0), "estimated"
            outcome = (status, finish, error_code)
            self.settle(ctx, request, plan, admission, candidate, usage, method, outcome, ttft_ms)

    # -- settlement ------------------------------------------------------------------------------------------

    def final_usage(self, plan: Plan, reported: Usage | None, delivered: int) -> tuple[Usage, str]:
        if reported is not None:
            return reported, "reported"
        return Usage(ceil_quarter(plan.prompt_bound), estimate_completion_tokens(delivered)), "estimated"


def _clamp_header(plan: Plan) -> dict[str, str]:
    clamped = plan.clamped_limit
    return {} if clamped is None else {"x-tollway-max-tokens-clamped": str(clamped)}


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
