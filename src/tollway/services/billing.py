"""Money around one inference call (SPEC §8 steps 6-8 and 10, §9.3, §9.4): place the wallet and budget holds
(clamping the output limit when only part of the worst case is affordable), then settle exactly once.

Every call holds before it goes upstream and resolves its hold once: captured with the actual cost, or released.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from tollway.domain.catalog import Candidate
from tollway.domain.chat_request import ChatRequest
from tollway.domain.clock import utcnow
from tollway.domain.holds import (
    CandidateTerms,
    Checkpoint,
    HoldGrant,
    HoldRequest,
    LogOnly,
    Refusal,
    Release,
    Settlement,
    image_terms,
)
from tollway.domain.ports.money import MoneyLedger
from tollway.domain.pricing import Usage, charge_nanos, cost_nanos, image_charge_nanos, image_cost_nanos
from tollway.domain.recovery import recovery_terms
from tollway.domain.tenancy import Principal
from tollway.domain.usage import CallStatus, UsageRecord
from tollway.errors import BudgetExhausted, BudgetSuspended, ServiceUnavailable, WalletInsufficient
from tollway.observability.metrics import Metrics
from tollway.settings import Settings

CHECKPOINT_EVERY_S = 5.0

_REFUSALS = {
    Refusal.SUSPENDED: (BudgetSuspended, "This end user's budget is suspended."),
    Refusal.BUDGET: (BudgetExhausted, "The end user's budget cannot cover this call."),
    Refusal.WALLET: (WalletInsufficient, "The platform wallet cannot cover this call; the platform must top it up."),
    Refusal.NO_WALLET: (WalletInsufficient, "The platform wallet cannot cover this call; the platform must top it up."),
}


@dataclass(frozen=True, slots=True)
class CallContext:
    principal: Principal
    request_id: str
    session_id: str | None
    received_at: float  # time.perf_counter() at receipt
    request_type: str = "chat.completion"
    # Whether the client has left; checked when a non-streaming call settles, so that a call whose client left runs
    # to completion, is billed in full and is logged ``interrupted`` (SPEC §7.3).
    client_gone: Callable[[], Awaitable[bool]] | None = None

    async def delivered_status(self) -> CallStatus:
        if self.client_gone is not None and await self.client_gone():
            return CallStatus.INTERRUPTED
        return CallStatus.SUCCESS


@dataclass(slots=True)
class Plan:
    """The candidates that survived step 3b, their output limits, and the hold once placed."""

    candidates: list[Candidate]
    limits: dict[str, int]  # model row id -> effective output limit per choice
    prompt_bound: int  # T_p before any context cap
    markup_bps: int
    hold: HoldGrant | None = None
    rate_clamp: int | None = None  # output limit lowered by the TPM headroom (§10)
    last_checkpoint: float = field(default_factory=time.monotonic)

    @property
    def clamped_limit(self) -> int | None:
        """The lowest output limit a clamp imposed (money §9.3 or TPM §10), for ``x-tollway-max-tokens-clamped``."""
        clamps = [c for c in (self.hold.clamped_limit if self.hold else None, self.rate_clamp) if c is not None]
        return min(clamps) if clamps else None

    def clamp(self, limit: int) -> None:
        self.limits = {k: min(v, limit) for k, v in self.limits.items()}


class Billing:
    def __init__(self, settings: Settings, ledger: MoneyLedger, metrics: Metrics | None = None) -> None:
        self._settings = settings
        self._ledger = ledger
        self._metrics = metrics

    async def hold(self, ctx: CallContext, request: ChatRequest, plan: Plan) -> None:
        """Steps 6-8 in one transaction; clamps ``plan.limits`` when the hold had to be lowered."""
        terms = tuple(
            CandidateTerms(
                model_id=c.model.id,
                prices=c.model.prices,
                output_limit=plan.limits[c.model.id],
                min_output=c.model.min_output,
                prompt_tokens=min(plan.prompt_bound, c.model.context_window or plan.prompt_bound),
            )
            for c in plan.candidates
        )
        recovery = recovery_terms(
            request.model,
            ctx.request_type,
            ctx.session_id,
            request.metadata,
            plan.prompt_bound,
            {
                c.model.id: {
                    "input": c.model.prices.input_nanos,
                    "output": c.model.prices.output_nanos,
                    "cached": c.model.prices.cached_input_nanos,
                    "provider_id": c.provider.id,
                    "upstream_model": c.model.upstream_model,
                }
                for c in plan.candidates
            },
        )
        result = await self._place(ctx, plan, terms, request.n, recovery)
        if result.clamped_limit is not None:
            plan.clamp(result.clamped_limit)

    async def _place(
        self, ctx: CallContext, plan: Plan, terms: tuple[CandidateTerms, ...], n: int, recovery: dict[str, Any]
    ) -> HoldGrant:
        """One hold request through the money writer; a refusal raises its 402 (or 503 without the database)."""
        principal = ctx.principal
        assert principal.platform_id is not None
        expires_at = utcnow() + timedelta(seconds=self._settings.total_timeout_s + 60)
        command = HoldRequest(
            ctx.request_id,
            principal.platform_id,
            principal.end_user_id,
            terms,
            n,
            plan.markup_bps,
            expires_at,
            recovery,
        )
        try:
            result = await self._ledger.place_hold(command)
        except Exception as exc:
            raise ServiceUnavailable("The database is unreachable; no call was made.") from exc
        if isinstance(result, Refusal):
            error, message = _REFUSALS[result]
            raise error(message)
        plan.hold = result
        return result

    async def confirm(self, plan: Plan) -> None:
        """Before an answer reaches the client: the hold it was made under is durable (the embedded store commits
        holds while their upstream request runs). If it could not be recorded the answer is withheld: 503."""
        assert plan.hold is not None
        try:
            await self._ledger.confirm(plan.hold.hold_id)
        except Exception as exc:
            message = "The database could not record this call's hold; its answer was withheld."
            raise ServiceUnavailable(message) from exc

    def release(self, plan: Plan) -> None:
        if plan.hold is not None:
            self._ledger.submit(Release(plan.hold.hold_id))

    def settle(
        self,
        ctx: CallContext,
        request: ChatRequest,
        plan: Plan,
        candidate: Candidate,
        usage: Usage,
        method: str,
        outcome: tuple[CallStatus, str | None, str | None],
        ttft_ms: int | None,
    ) -> None:
        """Queue the capture of the hold: wallet row, budget row and usage log row commit together (§9.4)."""
        assert plan.hold is not None
        status, finish, error_code = outcome
        record, charge = self._record(ctx, request, plan, candidate, usage, method, status, finish, error_code, ttft_ms)
        self._ledger.submit(Settlement(plan.hold.hold_id, record, charge))
        self._observe(record)

    def log_failure(self, ctx: CallContext, request: ChatRequest, plan: Plan, candidate: Candidate, code: str) -> None:
        """A failed attempt with no output: one log row, zero cost (§9.4, §14.2)."""
        record, _ = self._record(
            ctx, request, plan, candidate, Usage(0, 0), "reported", CallStatus.ERROR, None, code, None
        )
        self._ledger.submit(LogOnly(record))
        self._observe(record)

    def _observe(self, record: UsageRecord) -> None:
        """Tokens, cost and time to first token of a settled call (``tollway_tokens_total`` and friends). The
        uncollected total is read from the store at scrape time: only the commit knows what the wallet covered."""
        if self._metrics is not None:
            self._metrics.usage(
                record.model, record.prompt_tokens, record.completion_tokens, record.cost_nanos, record.ttft_ms
            )

    def checkpoint(self, plan: Plan, candidate: Candidate, delivered: int, usage: Usage | None) -> None:
        """Streaming progress on the hold, at most every 5 s, so the sweeper can settle it after a crash."""
        now = time.monotonic()
        if plan.hold is None or now - plan.last_checkpoint < CHECKPOINT_EVERY_S:
            return
        plan.last_checkpoint = now
        progress: dict[str, Any] = {"model_id": candidate.model.id, "delivered_bytes": delivered}
        if usage is not None:
            progress["usage"] = [usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens]
        self._ledger.submit(Checkpoint(plan.hold.hold_id, progress))

    def _record(
        self,
        ctx: CallContext,
        request: ChatRequest,
        plan: Plan,
        candidate: Candidate,
        usage: Usage,
        method: str,
        status: CallStatus,
        finish: str | None,
        error_code: str | None,
        ttft_ms: int | None,
    ) -> tuple[UsageRecord, int]:
        principal = ctx.principal
        assert principal.platform_id is not None
        cost = cost_nanos(usage, candidate.model.prices)
        charge = charge_nanos(usage, candidate.model.prices, plan.markup_bps)
        record = UsageRecord(
            request_id=ctx.request_id,
            platform_id=principal.platform_id,
            end_user_id=principal.end_user_id,
            request_type=ctx.request_type,
            provider_id=candidate.provider.id,
            model=request.model,
            provider_model=candidate.model.upstream_model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            latency_ms=int((time.perf_counter() - ctx.received_at) * 1000),
            ttft_ms=ttft_ms,
            cost_nanos=cost,
            # End users are charged with markup even without an active budget (logged, not debited, §12).
            charged_nanos=charge if principal.end_user_id is not None else None,
            status=status,
            finish_reason=finish,
            error_code=error_code,
            token_count_method=method,
            session_id=ctx.session_id,
            metadata=request.metadata,
        )
        return record, charge

    # -- image calls (SPEC §7.7, §9.2, §9.3): hold n × price, settle images returned × price ----------------------

    async def hold_images(self, ctx: CallContext, slug: str, n: int, plan: Plan) -> None:
        """Steps 6-8 for an image call: wallet hold n × the largest price over the candidates, budget hold that
        with markup; never clamped. Image calls never checkpoint, so an orphaned hold is released by the sweeper."""
        terms = tuple(image_terms(c.model.id, c.model.prices, _image_price(c)) for c in plan.candidates)
        recovery = recovery_terms(
            slug,
            ctx.request_type,
            ctx.session_id,
            {},
            0,
            {
                c.model.id: {
                    "input": 0,
                    "output": 0,
                    "cached": None,
                    "image": _image_price(c),
                    "provider_id": c.provider.id,
                    "upstream_model": c.model.upstream_model,
                }
                for c in plan.candidates
            },
        )
        await self._place(ctx, plan, terms, n, recovery)

    def settle_images(self, ctx: CallContext, slug: str, plan: Plan, candidate: Candidate, images: int) -> None:
        """Capture the hold at images returned × the serving row's price (charge with markup), one log row."""
        assert plan.hold is not None
        cost = image_cost_nanos(images, _image_price(candidate))
        charge = image_charge_nanos(cost, plan.markup_bps)
        record = self._image_record(ctx, slug, candidate, (cost, charge, images), CallStatus.SUCCESS, None)
        self._ledger.submit(Settlement(plan.hold.hold_id, record, charge))
        self._observe(record)

    def log_image_failure(self, ctx: CallContext, slug: str, candidate: Candidate, code: str) -> None:
        """A failed image attempt: one log row, zero cost, nothing captured (§9.4, §14.2)."""
        record = self._image_record(ctx, slug, candidate, (0, 0, 0), CallStatus.ERROR, code)
        self._ledger.submit(LogOnly(record))
        self._observe(record)

    def _image_record(
        self,
        ctx: CallContext,
        slug: str,
        candidate: Candidate,
        money: tuple[int, int, int],  # cost, charge, images returned
        status: CallStatus,
        error_code: str | None,
    ) -> UsageRecord:
        cost, charge, images = money
        principal = ctx.principal
        assert principal.platform_id is not None
        return UsageRecord(
            request_id=ctx.request_id,
            platform_id=principal.platform_id,
            end_user_id=principal.end_user_id,
            request_type=ctx.request_type,
            provider_id=candidate.provider.id,
            model=slug,
            provider_model=candidate.model.upstream_model,
            prompt_tokens=0,
            completion_tokens=0,
            cached_tokens=0,
            latency_ms=int((time.perf_counter() - ctx.received_at) * 1000),
            ttft_ms=None,
            cost_nanos=cost,
            charged_nanos=charge if principal.end_user_id is not None else None,
            status=status,
            finish_reason=None,
            error_code=error_code,
            token_count_method="reported",
            session_id=ctx.session_id,
            images=images,
        )


def _image_price(candidate: Candidate) -> int:
    price = candidate.model.price_per_image_nanos
    assert price is not None, "only rows with price_per_image serve images"
    return price
