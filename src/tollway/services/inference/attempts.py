"""Retries and fallback before the first byte reaches the client (SPEC §14.2).

Same row again (at most 2 retries) on connection errors, timeouts, 502/503/504 and a 429 that is not
quota-exhausted, waiting for Retry-After (else 0.5 s, then 1 s) only when the wait ends before the deadline; the
next candidate at once on any other upstream failure (401/403/404/500, quota-exhausted 429, a 3xx); 400/413/422 are
returned at once as ``context_length_exceeded`` or ``upstream_invalid_request`` (the adapter tells which). With a
``DeploymentHealth``, rows whose circuit is open are skipped and retries come out of the provider's retry budget
(services/breaker.py). Every failed attempt is reported to ``on_failure`` so that it is logged with zero cost; a
skipped row is not an attempt and is not logged.

When every candidate fails, the last failure decides: a timeout -> 504 ``upstream_timeout``; a 429 that is not
quota-exhausted -> 429 ``upstream_rate_limited`` with the provider's Retry-After; anything else -> 502
``upstream_error``. When every candidate was skipped by its breaker -> 503 ``provider_unavailable``, Retry-After the
seconds until the first of them half-opens.

Every attempt is counted in ``tollway_upstream_requests_total`` and timed in ``tollway_upstream_latency_seconds``,
and the whole call (retry waits included) counts as upstream wait, which the added-latency measure subtracts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from tollway.domain.catalog import Candidate
from tollway.errors import (
    ProviderUnavailable,
    UpstreamError,
    UpstreamInvalidRequest,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from tollway.observability.context import RequestContext, current_request
from tollway.services.inference.breaker import DeploymentHealth

T = TypeVar("T")

_RETRY_STATUSES = frozenset({502, 503, 504})
_RETURN_AT_ONCE = frozenset({400, 413, 422})
_DEFAULT_WAITS = (0.5, 1.0)
MAX_RETRIES = 2


def _retryable(error: UpstreamError) -> bool:
    status = error.upstream_status
    if status is None:
        return True
    if status == 429:
        return not error.quota_exhausted
    return status in _RETRY_STATUSES


def _rejected(error: UpstreamError) -> UpstreamInvalidRequest:
    """An upstream 400/413/422 as the client's error; adapters already classify theirs (providers/transport.py)."""
    if isinstance(error, UpstreamInvalidRequest):
        return error
    assert error.upstream_status is not None
    return UpstreamInvalidRequest(error.message, upstream_status=error.upstream_status, param=error.param)


def _circuit_open(candidates: Sequence[Candidate], health: DeploymentHealth) -> ProviderUnavailable:
    first = candidates[0]
    wait_s = min(health.breaker.half_opens_in(c.model.id) for c in candidates)
    return ProviderUnavailable(
        f"Upstream provider '{first.provider.slug}' could not be reached: it failed repeatedly and is paused "
        "for up to 30 s (circuit open).",
        wait_s,
    )


def _exhausted(last: UpstreamError) -> UpstreamError:
    """The error once every candidate has failed: the last failure decides (SPEC §14.2)."""
    if isinstance(last, UpstreamTimeout):
        return last
    if last.upstream_status == 429 and not last.quota_exhausted:
        return UpstreamRateLimited(last.message, last.retry_after_s)
    return UpstreamError(last.message, upstream_status=last.upstream_status)


async def _measured(
    candidate: Candidate,
    attempt: Callable[[Candidate], Awaitable[T]],
    health: DeploymentHealth | None,
    context: RequestContext | None,
) -> T:
    """One attempt, counted and timed when the request carries the process metrics."""
    metrics = context.metrics if context is not None else None
    if metrics is None:
        return await _attempt(candidate, attempt, health)
    started = time.perf_counter()
    outcome = "error"
    try:
        result = await _attempt(candidate, attempt, health)
        outcome = "success"
        return result
    except UpstreamTimeout:
        outcome = "timeout"
        raise
    finally:
        metrics.upstream_attempt(candidate.provider.slug, candidate.model.slug, outcome, time.perf_counter() - started)


async def _attempt(
    candidate: Candidate, attempt: Callable[[Candidate], Awaitable[T]], health: DeploymentHealth | None
) -> T:
    """One call, with its verdict reported to the row's circuit breaker."""
    if health is None:
        return await attempt(candidate)
    row = candidate.model.id
    try:
        result = await attempt(candidate)
    except UpstreamError as error:
        if error.upstream_status in _RETURN_AT_ONCE:
            health.breaker.release(row)  # the request was at fault, not the row
        else:
            health.breaker.failure(row)
        raise
    except BaseException:
        health.breaker.release(row)
        raise
    health.breaker.success(row)
    return result


async def with_fallback(
    candidates: Sequence[Candidate],
    attempt: Callable[[Candidate], Awaitable[T]],
    on_failure: Callable[[Candidate, UpstreamError], None],
    deadline: float,
    *,
    health: DeploymentHealth | None = None,
) -> tuple[Candidate, T]:
    context = current_request()
    started = time.perf_counter()
    try:
        return await _with_fallback(candidates, attempt, on_failure, deadline, health, context)
    finally:
        if context is not None:
            context.upstream_s += time.perf_counter() - started


async def _with_fallback(
    candidates: Sequence[Candidate],
    attempt: Callable[[Candidate], Awaitable[T]],
    on_failure: Callable[[Candidate, UpstreamError], None],
    deadline: float,
    health: DeploymentHealth | None,
    context: RequestContext | None,
) -> tuple[Candidate, T]:
    loop = asyncio.get_running_loop()
    last: UpstreamError | None = None
    for candidate in candidates:
        if health is not None:
            if not health.breaker.admit(candidate.model.id):
                continue
            health.budget.request(candidate.provider.id)
        retries = 0
        while True:
            try:
                return candidate, await _measured(candidate, attempt, health, context)
            except UpstreamError as error:
                last = error
                on_failure(candidate, error)
                if error.upstream_status in _RETURN_AT_ONCE:
                    raise _rejected(error) from None
                if not _retryable(error) or retries >= MAX_RETRIES:
                    break
                wait = error.retry_after_s if error.retry_after_s is not None else _DEFAULT_WAITS[retries]
                if loop.time() + wait >= deadline:
                    break
                if health is not None and not health.budget.try_retry(candidate.provider.id):
                    break
                retries += 1
                await asyncio.sleep(wait)
                if health is not None and not health.breaker.admit(candidate.model.id):
                    break
        if loop.time() >= deadline:
            break
    if last is None:  # every candidate was skipped by its circuit breaker
        if not candidates or health is None:
            raise UpstreamError("No upstream provider could be called.")
        raise _circuit_open(candidates, health)
    raise _exhausted(last)
