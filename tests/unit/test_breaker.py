"""Deployment health (SPEC §14.2) with an injected clock: the circuit breaker per model row, the retry budget per
provider, and how retries and fallback consult them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tollway.domain.catalog import Candidate, ModelRow, Provider, ProviderKind
from tollway.domain.pricing import Prices
from tollway.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ProviderUnavailable,
    UpstreamError,
    UpstreamInvalidRequest,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from tollway.services.inference.attempts import with_fallback
from tollway.services.inference.breaker import BreakerState, CircuitBreaker, DeploymentHealth, RetryBudget

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def row(name: str, provider: str = "p1") -> Candidate:
    prov = Provider(provider, provider, provider, ProviderKind.OPENAI, "https://x.test", True, EPOCH, EPOCH)
    model = ModelRow(name, "chat", provider, name, Prices(1, 1), None, 0, None, 100, None, True, EPOCH, EPOCH)
    return Candidate(model, prov, "key")


def test_breaker_opens_after_five_consecutive_failures_then_lets_one_trial_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock)
    for _ in range(4):
        breaker.failure("r")
    breaker.success("r")  # a success resets the count
    for _ in range(4):
        breaker.failure("r")
    assert breaker.admit("r") and breaker.state("r") is BreakerState.CLOSED
    breaker.failure("r")
    assert breaker.state("r") is BreakerState.OPEN and not breaker.admit("r")
    clock.now += 29.9
    assert not breaker.admit("r")
    clock.now += 0.2
    assert breaker.state("r") is BreakerState.HALF_OPEN
    assert breaker.admit("r") and not breaker.admit("r")  # one trial at a time
    breaker.failure("r")  # the trial failed: open for another 30 s
    assert not breaker.admit("r")
    clock.now += 30
    assert breaker.admit("r")
    breaker.release("r")  # a trial that said nothing (cancelled) frees the slot
    assert breaker.admit("r")
    breaker.success("r")
    assert breaker.state("r") is BreakerState.CLOSED and breaker.admit("r") and breaker.admit("r")


def test_retry_budget_is_twenty_percent_of_requests_over_a_sliding_window() -> None:
    clock = Clock()
    budget = RetryBudget(clock, min_retries=2)
    budget.request("p")
    assert budget.try_retry("p") and budget.try_retry("p")  # the floor: a lone request keeps its 2 retries
    assert not budget.try_retry("p")
    for _ in range(19):
        budget.request("p")  # 20 requests: 20 % is 4 retries in the window
    assert budget.try_retry("p") and budget.try_retry("p")
    assert not budget.try_retry("p")
    assert budget.try_retry("other")  # per provider
    clock.now += 10.01  # everything slid out of the window
    assert budget.try_retry("p")


def failing(status: int | None, calls: list[str], timeout: bool = False) -> object:
    async def attempt(candidate: Candidate) -> str:
        calls.append(candidate.model.id)
        if timeout:
            raise UpstreamTimeout("slow")
        raise UpstreamError("boom", upstream_status=status, retry_after_s=0)

    return attempt


async def test_open_circuits_are_skipped_and_a_lone_open_row_is_an_upstream_error() -> None:
    health = DeploymentHealth.with_clock(Clock())
    deadline = asyncio.get_running_loop().time() + 60
    calls: list[str] = []
    failures: list[str] = []

    async def attempt(candidate: Candidate) -> str:
        calls.append(candidate.model.id)
        if candidate.model.id == "bad":
            raise UpstreamError("down", upstream_status=500)
        return "ok"

    for _ in range(5):
        served, result = await with_fallback(
            [row("bad"), row("good")], attempt, lambda c, e: failures.append(c.model.id), deadline, health=health
        )
        assert (served.model.id, result) == ("good", "ok")
    assert calls.count("bad") == 5 and len(failures) == 5
    calls.clear()
    served, _ = await with_fallback([row("bad"), row("good")], attempt, lambda c, e: None, deadline, health=health)
    assert served.model.id == "good" and calls == ["good"]  # skipped: no attempt, nothing logged
    with pytest.raises(UpstreamError, match="circuit open"):
        await with_fallback([row("bad")], attempt, lambda c, e: None, deadline, health=health)


async def test_request_errors_do_not_trip_the_breaker_and_other_errors_pass_through() -> None:
    health = DeploymentHealth.with_clock(Clock())
    deadline = asyncio.get_running_loop().time() + 60
    calls: list[str] = []
    for _ in range(6):
        with pytest.raises(UpstreamError):
            await with_fallback([row("r")], failing(400, calls), lambda c, e: None, deadline, health=health)
    assert health.breaker.state("r") is BreakerState.CLOSED and len(calls) == 6

    async def invalid(candidate: Candidate) -> str:
        raise InvalidRequest("bad", "x")

    with pytest.raises(InvalidRequest):
        await with_fallback([row("r")], invalid, lambda c, e: None, deadline, health=health)


async def test_retries_stop_when_the_budget_is_spent() -> None:
    health = DeploymentHealth(CircuitBreaker(Clock(), threshold=100), RetryBudget(Clock(), min_retries=3))
    deadline = asyncio.get_running_loop().time() + 60
    calls: list[str] = []
    for _ in range(3):
        with pytest.raises(UpstreamError):
            await with_fallback([row("r")], failing(503, calls), lambda c, e: None, deadline, health=health)
    assert len(calls) == 3 + 3  # 2 retries for the first call, 1 for the second, none for the third


async def test_retries_without_health_and_the_last_timeout_wins() -> None:
    deadline = asyncio.get_running_loop().time() + 60
    calls: list[str] = []
    with pytest.raises(UpstreamError) as err:
        await with_fallback([row("a"), row("b")], failing(429, calls), lambda c, e: None, deadline)
    assert calls == ["a", "a", "a", "b", "b", "b"] and err.value.upstream_status == 429
    calls.clear()
    with pytest.raises(UpstreamError):
        await with_fallback([row("a"), row("b")], failing(401, calls), lambda c, e: None, deadline)
    assert calls == ["a", "b"]  # 401: the next candidate at once
    calls.clear()
    with pytest.raises(UpstreamError):
        await with_fallback([row("a"), row("b")], failing(422, calls), lambda c, e: None, deadline)
    assert calls == ["a"]  # a request problem: returned at once
    calls.clear()
    with pytest.raises(UpstreamTimeout):
        await with_fallback([row("a")], failing(None, calls, timeout=True), lambda c, e: None, deadline)


# What the client sees once retries and fallback are over (SPEC §3, §14.2).


def test_half_opens_in_counts_down_to_the_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock)
    assert breaker.half_opens_in("r") == 0
    for _ in range(5):
        breaker.failure("r")
    assert breaker.half_opens_in("r") == 30
    clock.now += 29.5
    assert breaker.half_opens_in("r") == pytest.approx(0.5)
    clock.now += 1
    assert breaker.half_opens_in("r") == 0 and breaker.state("r") is BreakerState.HALF_OPEN


async def test_every_candidate_open_is_503_provider_unavailable_until_the_first_half_opens() -> None:
    clock = Clock()
    health = DeploymentHealth.with_clock(clock)
    deadline = asyncio.get_running_loop().time() + 60
    for _ in range(5):
        health.breaker.failure("a")
    clock.now += 20.2
    for _ in range(5):
        health.breaker.failure("b")
    calls: list[str] = []
    with pytest.raises(ProviderUnavailable) as err:
        await with_fallback([row("b", "pb"), row("a")], failing(500, calls), lambda c, e: None, deadline, health=health)
    assert calls == [] and (err.value.status, err.value.code, err.value.type) == (
        503,
        "provider_unavailable",
        "server_error",
    )
    assert err.value.headers == {"retry-after": "10"}  # "a" half-opens in 9.8 s: rounded up to whole seconds
    assert "circuit open" in err.value.message and "'pb'" in err.value.message


async def test_a_persisting_429_is_upstream_rate_limited_with_the_providers_retry_after() -> None:
    deadline = asyncio.get_running_loop().time() + 60
    calls: list[str] = []

    async def limited(candidate: Candidate) -> str:
        calls.append(candidate.model.id)
        raise UpstreamError(
            "Upstream provider 'p1' returned HTTP 429: slow down", upstream_status=429, retry_after_s=1.2
        )

    with pytest.raises(UpstreamRateLimited) as err:
        await with_fallback([row("a")], limited, lambda c, e: None, deadline)
    assert calls == ["a", "a", "a"]
    assert (err.value.status, err.value.code, err.value.type) == (429, "upstream_rate_limited", "rate_limit_error")
    assert err.value.headers == {"retry-after": "2"} and err.value.message.endswith("slow down")
    calls.clear()
    with pytest.raises(UpstreamRateLimited) as err:
        await with_fallback([row("a")], failing(429, calls), lambda c, e: None, deadline)
    assert err.value.headers == {"retry-after": "1"}  # Retry-After: 0 is never sent as 0


async def test_a_quota_exhausted_429_or_a_later_other_failure_stays_502() -> None:
    deadline = asyncio.get_running_loop().time() + 60

    async def quota(candidate: Candidate) -> str:
        raise UpstreamError("out of quota", upstream_status=429, quota_exhausted=True)

    with pytest.raises(UpstreamError) as err:
        await with_fallback([row("a"), row("b")], quota, lambda c, e: None, deadline)
    assert (err.value.status, err.value.code, err.value.headers) == (502, "upstream_error", {})

    async def limited_then_broken(candidate: Candidate) -> str:
        status = 429 if candidate.model.id == "a" else 500
        raise UpstreamError("no", upstream_status=status, retry_after_s=0)

    with pytest.raises(UpstreamError) as err:
        await with_fallback([row("a"), row("b")], limited_then_broken, lambda c, e: None, deadline)
    assert (err.value.status, err.value.code) == (502, "upstream_error")  # the last failure decides


async def test_request_faults_are_returned_at_once_as_the_clients_error() -> None:
    deadline = asyncio.get_running_loop().time() + 60
    calls: list[str] = []
    failures: list[str] = []
    with pytest.raises(UpstreamInvalidRequest) as err:
        await with_fallback([row("a"), row("b")], failing(413, calls), lambda c, e: failures.append(e.code), deadline)
    assert (err.value.status, err.value.code, err.value.type) == (
        413,
        "upstream_invalid_request",
        "invalid_request_error",
    )
    assert calls == ["a"] and failures == ["upstream_error"]
    too_long = ContextLengthExceeded("too long", upstream_status=400, param="messages")

    async def context(candidate: Candidate) -> str:
        raise too_long

    with pytest.raises(ContextLengthExceeded) as raised:
        await with_fallback([row("a"), row("b")], context, lambda c, e: failures.append(e.code), deadline)
    assert raised.value is too_long and failures[-1] == "context_length_exceeded"
    assert raised.value.body()["error"] == {
        "message": "too long",
        "type": "invalid_request_error",
        "code": "context_length_exceeded",
        "param": "messages",
    }
