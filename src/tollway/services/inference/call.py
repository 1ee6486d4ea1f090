"""THE paid-call lifecycle (SPEC §8, §9.3, §9.4, §10): every call that costs money (a chat completion, a Responses
turn, an image request, and whatever comes next) runs through here, in this order:

1. pre-flight: the platform's catalog (``catalog``) and the kind's own choice of candidates (``choose``) -> ``Plan``;
2. ``open``: rate-limit admission (step 5), then the wallet and budget holds (steps 6-8), clamping the output
   limit when only part of the worst case is affordable; a refusal returns the TPM reservation;
3. ``PaidCall.attempt``: the kind's upstream step with retries and fallback (step 9), each failed attempt logged
   at zero cost;
4. ``PaidCall.confirm`` before any answer reaches the client (the hold is durable);
5. exactly one of ``PaidCall.settle`` (capture, ledger rows, usage log row, webhook outbox rows, the TPM
   reservation corrected; committed by the money writer) or ``PaidCall.release`` (nothing delivered).

A settlement, and a stream's checkpoint, is written ahead to the instance's journal as the money writer takes it
(SPEC §9.4), so both must happen before the bytes they account for reach the client: a plain answer settles before
its body is returned, a stream checkpoints before the events of a chunk are yielded and settles before its terminal
event (``StreamTally.settle``), and settles again from ``finally`` only if it never got there.

A kind of call supplies its ``Tariff`` (domain/tariffs.py) and its upstream step; it never touches holds itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar

from tollway.domain.catalog import Candidate
from tollway.domain.clock import utcnow
from tollway.domain.holds import Checkpoint, HoldGrant, HoldRequest, LogOnly, Refusal, Release, Settlement
from tollway.domain.ports.money import MoneyLedger
from tollway.domain.ports.providers import ChatStream
from tollway.domain.pricing import Usage
from tollway.domain.ratelimit import TokenDemand
from tollway.domain.recovery import recovery_terms
from tollway.domain.tariffs import NOTHING, Metered, Tariff
from tollway.domain.tenancy import Principal
from tollway.domain.usage import NO_LABELS, CallLabels, CallStatus, UsageRecord
from tollway.errors import (
    BudgetExhausted,
    BudgetSuspended,
    ServiceUnavailable,
    TollwayError,
    UpstreamError,
    WalletInsufficient,
)
from tollway.observability.metrics import Metrics
from tollway.services.inference.attempts import with_fallback
from tollway.services.inference.breaker import DeploymentHealth
from tollway.services.inference.routing import CandidateRouter, PlatformCatalog
from tollway.services.ratelimit import Admission, RateLimiter
from tollway.settings import Settings

log = logging.getLogger("tollway.inference")
T = TypeVar("T")
C = TypeVar("C")

CHECKPOINT_EVERY_S = 5.0

_WALLET_REFUSAL = "The platform wallet cannot cover this call; the platform must top it up."
_REFUSALS: dict[Refusal, tuple[type[TollwayError], str]] = {
    Refusal.SUSPENDED: (BudgetSuspended, "This end user's budget is suspended."),
    Refusal.BUDGET: (BudgetExhausted, "The end user's budget cannot cover this call."),
    Refusal.WALLET: (WalletInsufficient, _WALLET_REFUSAL),
    Refusal.NO_WALLET: (WalletInsufficient, _WALLET_REFUSAL),
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
    labels: CallLabels = NO_LABELS  # response, turn, thread and MCP tool the usage row is tied to (§12)

    @property
    def platform_id(self) -> str:
        platform_id = self.principal.platform_id
        assert platform_id is not None, "inference keys always belong to a platform"
        return platform_id

    async def delivered_status(self) -> CallStatus:
        if self.client_gone is not None and await self.client_gone():
            return CallStatus.INTERRUPTED
        return CallStatus.SUCCESS


@dataclass(slots=True)
class Plan:
    """The candidates that survived pre-flight (step 3b), their output limits, and the hold once placed."""

    slug: str  # the model the caller asked for; the usage log's ``model``
    candidates: list[Candidate]
    limits: dict[str, int]  # model row id -> effective output limit per choice
    prompt_bound: int  # T_p before any context cap
    markup_bps: int
    n: int = 1  # choices (chat) or images asked for
    metadata: dict[str, str] = field(default_factory=dict)
    hold: HoldGrant | None = None
    rate_clamp: int | None = None  # output limit lowered by the TPM headroom (§10)
    last_checkpoint: float | None = None  # time.monotonic() of the last streaming checkpoint

    @property
    def clamped_limit(self) -> int | None:
        """The lowest output limit a clamp imposed (money §9.3 or TPM §10), for ``x-tollway-max-tokens-clamped``."""
        clamps = [c for c in (self.hold.clamped_limit if self.hold else None, self.rate_clamp) if c is not None]
        return min(clamps) if clamps else None

    def clamp(self, limit: int) -> None:
        self.limits = {k: min(v, limit) for k, v in self.limits.items()}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a call ended, for its usage log row."""

    status: CallStatus
    finish_reason: str | None = None
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class Priced:
    """What a settled call is priced at (§9.2), computed once by the kind's tariff: the raw cost debited from the
    wallet, the end-user charge with markup, and the amount the caller is told in ``usage.cost`` (§19): the charge
    for an end-user key, the raw cost for a platform key."""

    cost_nanos: int
    charge_nanos: int
    end_user: bool

    @property
    def caller_nanos(self) -> int:
        return self.charge_nanos if self.end_user else self.cost_nanos


def choose(candidates: Iterable[C], refusal: Callable[[C], TollwayError | None]) -> list[C]:
    """Step 3b: the candidates no rule refuses; when every one is refused, the first refusal is the answer."""
    survivors: list[C] = []
    first: TollwayError | None = None
    for candidate in candidates:
        reason = refusal(candidate)
        if reason is None:
            survivors.append(candidate)
        elif first is None:
            first = reason
    if not survivors:
        assert first is not None, "choose() needs at least one candidate"
        raise first
    return survivors


def token_demand(plan: Plan) -> TokenDemand:
    """The TPM estimate of a token-priced call: its hold's T_p + n × output limit (§10)."""
    return TokenDemand(
        prompt_tokens=max(min(plan.prompt_bound, c.model.context_window or plan.prompt_bound) for c in plan.candidates),
        n=plan.n,
        output_limit=max(plan.limits.values()),
        min_output=max(c.model.min_output for c in plan.candidates),
    )


class CallLifecycle:
    """Built once per process; ``open`` starts one paid call."""

    def __init__(
        self,
        settings: Settings,
        router: CandidateRouter,
        money: MoneyLedger,
        limiter: RateLimiter,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self._router = router
        self._money = money
        self._limiter = limiter
        self._metrics = metrics

    async def catalog(self, ctx: CallContext) -> PlatformCatalog:
        """The platform's usable rows by slug (cached; ``ServiceUnavailable`` without the database)."""
        return await self._router.catalog(ctx.platform_id)

    async def open(
        self, ctx: CallContext, plan: Plan, tariff: Tariff, demand: TokenDemand, health: DeploymentHealth
    ) -> PaidCall:
        """Steps 5-8: admitted, then held; a refusal in steps 6-8 returns the TPM reservation (§8)."""
        admission = await self._limiter.admit(ctx.platform_id, ctx.principal.end_user_id, demand)
        if admission.clamped_output_limit is not None:
            plan.rate_clamp = admission.clamped_output_limit
            plan.clamp(admission.clamped_output_limit)
        try:
            await self._hold(ctx, plan, tariff)
        except BaseException:
            self._limiter.refund(admission)
            raise
        deadline = asyncio.get_running_loop().time() + self.settings.total_timeout_s
        return PaidCall(self, ctx, plan, tariff, admission, health, deadline)

    async def _hold(self, ctx: CallContext, plan: Plan, tariff: Tariff) -> None:
        """One hold request through the money writer; a refusal raises its 402 (or 503 without the database)."""
        terms = tuple(tariff.terms(c, plan.limits[c.model.id], plan.prompt_bound) for c in plan.candidates)
        recovery = recovery_terms(
            plan.slug,
            ctx.request_type,
            ctx.session_id,
            plan.metadata,
            plan.prompt_bound,
            {c.model.id: tariff.recovery(c) for c in plan.candidates},
            ctx.labels,
        )
        expires_at = utcnow() + timedelta(seconds=self.settings.total_timeout_s + 60)
        command = HoldRequest(
            ctx.request_id,
            ctx.platform_id,
            ctx.principal.end_user_id,
            terms,
            plan.n,
            plan.markup_bps,
            expires_at,
            recovery,
        )
        try:
            result = await self._money.place_hold(command)
        except Exception as exc:
            raise ServiceUnavailable("The database is unreachable; no call was made.") from exc
        if isinstance(result, Refusal):
            error, message = _REFUSALS[result]
            raise error(message)
        plan.hold = result
        if result.clamped_limit is not None:
            plan.clamp(result.clamped_limit)

    # -- what a PaidCall asks of the process -------------------------------------------------------------------

    async def _confirm(self, hold: HoldGrant) -> None:
        try:
            await self._money.confirm(hold.hold_id)
        except Exception as exc:
            message = "The database could not record this call's hold; its answer was withheld."
            raise ServiceUnavailable(message) from exc

    def _submit(self, command: Settlement | LogOnly | Release | Checkpoint) -> None:
        self._money.submit(command)
        if self._metrics is not None and isinstance(command, Settlement | LogOnly):
            # Tokens, cost and time to first token of a settled call; the uncollected total is read from the store
            # at scrape time, since only the commit knows what the wallet covered.
            record = command.record
            self._metrics.usage(
                record.model, record.prompt_tokens, record.completion_tokens, record.cost_nanos, record.ttft_ms
            )

    def _provisional(self, command: Checkpoint) -> None:
        self._money.provisional(command)

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter


class PaidCall:
    """One call in flight, held and admitted, resolved exactly once: settled or released.

    Used as ``with call:`` around everything before the answer is handed over: an exception there releases the
    hold and returns the TPM reservation. A stream hands the call to its relay, which settles in its ``finally``.
    """

    def __init__(
        self,
        lifecycle: CallLifecycle,
        ctx: CallContext,
        plan: Plan,
        tariff: Tariff,
        admission: Admission,
        health: DeploymentHealth,
        deadline: float,
    ) -> None:
        self.ctx = ctx
        self.plan = plan
        self.deadline = deadline  # every attempt shares it: retries never stretch the total timeout (§14.1)
        self._lifecycle = lifecycle
        self._tariff = tariff
        self._admission = admission
        self._health = health
        self._resolved = False

    def __enter__(self) -> PaidCall:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is not None:
            self.release()

    @property
    def headers(self) -> dict[str, str]:
        """The rate-limit headers of the admission and ``x-tollway-max-tokens-clamped`` when a clamp applied."""
        clamped = self.plan.clamped_limit
        clamp = {} if clamped is None else {"x-tollway-max-tokens-clamped": str(clamped)}
        return {**self._admission.headers, **clamp}

    async def attempt(self, step: Callable[[Candidate], Awaitable[T]]) -> tuple[Candidate, T]:
        """Step 9: ``step`` over the candidates with retries and fallback, through this kind's circuit breakers."""
        return await with_fallback(self.plan.candidates, step, self._failed, self.deadline, health=self._health)

    def _failed(self, candidate: Candidate, error: UpstreamError) -> None:
        """A failed attempt with no output: one log row, zero cost (§9.4, §14.2)."""
        log.warning("upstream attempt failed: %s", error.message, extra={"request_id": self.ctx.request_id})
        record, _ = self._record(candidate, NOTHING, Outcome(CallStatus.ERROR, None, error.code), None)
        self._lifecycle._submit(LogOnly(record))

    async def confirm(self, stream: ChatStream | None = None) -> None:
        """Before an answer reaches the client its hold is durable (the embedded store commits holds while their
        upstream request runs). If it could not be recorded the answer is withheld (503) and an opened stream is
        closed."""
        assert self.plan.hold is not None
        try:
            await self._lifecycle._confirm(self.plan.hold)
        except BaseException:
            if stream is not None:
                stream.close()
            raise

    @property
    def resolved(self) -> bool:
        """Settled or released already."""
        return self._resolved

    def opening(self, candidate: Candidate) -> None:
        """Before a stream's first bytes (its opening events, which carry no content yet): a provisional record in
        the journal only, so that an instance killed before the first content checkpoint still has the stream
        billed, as any stream cut before its output is, for its prompt (§9.4). The hold's own checkpoint waits for
        content, as the sweeper's rule wants."""
        if self.plan.hold is not None:
            progress = {"model_id": candidate.model.id, "delivered_bytes": 0}
            self._lifecycle._provisional(Checkpoint(self.plan.hold.hold_id, progress, self.ctx.request_id))

    def checkpoint(self, candidate: Candidate, delivered: int, usage: Usage | None) -> None:
        """Streaming progress on the hold, so that the call is billed for what it delivered after a crash (§9.4):
        before the first content byte is sent to the client, then at most every 5 s. Written ahead to the journal
        (a killed instance's successor settles the hold from it) and queued with the money writer's other work
        (the sweeper settles an expired hold from it)."""
        plan = self.plan
        now = time.monotonic()
        if plan.hold is None or (delivered == 0 and usage is None):
            return
        if plan.last_checkpoint is not None and now - plan.last_checkpoint < CHECKPOINT_EVERY_S:
            return
        plan.last_checkpoint = now
        progress: dict[str, Any] = {"model_id": candidate.model.id, "delivered_bytes": delivered}
        if usage is not None:
            progress["usage"] = [
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens,
                usage.cache_write_tokens,
            ]
        self._lifecycle._submit(Checkpoint(plan.hold.hold_id, progress, self.ctx.request_id))

    def price(self, candidate: Candidate, metered: Metered) -> Priced:
        """What ``settle`` will charge for ``metered`` on ``candidate``: a stream prices its final usage event with
        this before its relay settles, so the answer's ``usage.cost`` and the ledger come from one computation."""
        cost, charge = self._tariff.price(candidate, metered, self.plan.markup_bps)
        return Priced(cost, charge, self.ctx.principal.end_user_id is not None)

    def settle(self, candidate: Candidate, metered: Metered, outcome: Outcome, ttft_ms: int | None = None) -> Priced:
        """Step 10: capture the hold with what the call delivered; wallet row, budget row, usage log row and webhook
        outbox rows commit together (§9.4); the TPM reservation is corrected to the tokens used. Returns the
        amounts the settlement records, for the answer's ``usage.cost``. The settlement is in the journal when this
        returns (written ahead, SPEC §9.4): call it before the answer's last bytes go out."""
        assert self.plan.hold is not None and not self._resolved, "a call settles once"
        self._resolved = True
        record, priced = self._record(candidate, metered, outcome, ttft_ms)
        self._lifecycle._submit(Settlement(self.plan.hold.hold_id, record, priced.charge_nanos))
        self._lifecycle.limiter.adjust(self._admission, metered.usage.total_tokens)
        return priced

    def finish_unbilled(self, candidate: Candidate, outcome: Outcome) -> None:
        """Instead of ``settle``: the call reached its upstream but is not billed (an MCP call the free tier paid, or
        one that reached the app and got no usable answer, §16.3): the hold is released and the usage row is written
        at zero cost, with no ledger rows."""
        assert not self._resolved, "a call settles once"
        self._resolved = True
        record, _ = self._record(candidate, NOTHING, outcome, None)
        if self.plan.hold is not None:
            self._lifecycle._submit(Release(self.plan.hold.hold_id))
        self._lifecycle._submit(LogOnly(record))
        self._lifecycle.limiter.refund(self._admission)

    def release(self) -> None:
        """Nothing was delivered: free the hold and the TPM reservation."""
        if self._resolved:
            return
        self._resolved = True
        if self.plan.hold is not None:
            self._lifecycle._submit(Release(self.plan.hold.hold_id))
        self._lifecycle.limiter.refund(self._admission)

    def _record(
        self, candidate: Candidate, metered: Metered, outcome: Outcome, ttft_ms: int | None
    ) -> tuple[UsageRecord, Priced]:
        ctx, plan = self.ctx, self.plan
        end_user_id = ctx.principal.end_user_id
        priced = self.price(candidate, metered)
        cost, charge = priced.cost_nanos, priced.charge_nanos
        usage = metered.usage
        record = UsageRecord(
            request_id=ctx.request_id,
            platform_id=ctx.platform_id,
            end_user_id=end_user_id,
            request_type=ctx.request_type,
            provider_id=candidate.provider.id or None,  # none for a call no provider served (an MCP app)
            model=plan.slug,
            provider_model=candidate.model.upstream_model or None,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            latency_ms=int((time.perf_counter() - ctx.received_at) * 1000),
            ttft_ms=ttft_ms,
            cost_nanos=cost,
            # End users are charged with markup even without an active budget (logged, not debited, §12).
            charged_nanos=charge if end_user_id is not None else None,
            status=outcome.status,
            finish_reason=outcome.finish_reason,
            error_code=outcome.error_code,
            token_count_method=metered.method,
            session_id=ctx.session_id,
            metadata=plan.metadata,
            units=metered.units,
            **ctx.labels.columns(),
        )
        return record, priced
