"""The rate-limit backends (SPEC §10) with real concurrency: the in-process one and Redis (a real redis-server on
loopback) give the same exact answers; several instances share one Redis exactly; a killed Redis degrades to local
shares without an exception and recovers; the limiter service raises 429 with Retry-After and the headers."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio

from tests.conftest import make_settings
from tests.support.redis_server import RedisServer, redis_server_fixture, start_redis_or_skip
from tests.support.servers import free_port
from tollway.domain.platform_settings import RateLimits
from tollway.domain.ports.ratelimit import RateLimitBackend
from tollway.domain.ratelimit import Decision, Dimension, Resolution, TokenDemand
from tollway.errors import RateLimited, ServiceUnavailable
from tollway.services.ratelimit import CACHE_TTL_S, FailoverBackend, LimitCache, RateLimiter
from tollway.settings import redis_endpoint
from tollway.storage.ratelimit.memory import InProcessRateLimitBackend
from tollway.storage.ratelimit.redis import ADMIT_LUA, CORRECTION_DELAY_S, RedisRateLimitBackend
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.rate_overrides import RateOverrideStore

# "redis-busy-poll": the gateway's default, which polls the event loop while a lone admission is on its way.
BACKENDS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis-busy-poll", marks=pytest.mark.redis),
]
SMALL = TokenDemand(prompt_tokens=10, n=1, output_limit=10)


# Exactness tests must not fall back to local shares because a busy CI machine answered slowly; the production
# bound (0.25 s) is exercised by the failover tests.
LOADED_MACHINE_TIMEOUT_S = 5.0


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


class FakeClock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


BackendFactory = Callable[..., RateLimitBackend]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from redis_server_fixture()


@pytest.fixture(params=BACKENDS)
async def make_backend(request: pytest.FixtureRequest) -> AsyncIterator[BackendFactory]:
    """Builds backends of the parametrized kind; ``clock_ms`` None means the real clock (Redis: the server's)."""
    made: list[RateLimitBackend] = []

    def factory(clock_ms: Callable[[], int] | None = None) -> RateLimitBackend:
        backend: RateLimitBackend
        if request.param == "memory":
            backend = InProcessRateLimitBackend() if clock_ms is None else InProcessRateLimitBackend(clock_ms)
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            backend = RedisRateLimitBackend(
                redis_endpoint(server.url, connect_timeout_s=LOADED_MACHINE_TIMEOUT_S),
                clock_ms=clock_ms,
                timeout_s=LOADED_MACHINE_TIMEOUT_S,
                busy_poll_s=0.00025 if request.param == "redis-busy-poll" else 0.0,
            )
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        await backend.close()


def _user() -> str:
    return str(uuid.uuid4())


def _admitted(decisions: list[Decision]) -> list[Decision]:
    return [d for d in decisions if d.admitted]


# -- exactness under concurrency ---------------------------------------------------------------------------------


async def test_60_rpm_admits_exactly_60_of_200_concurrent(make_backend: BackendFactory) -> None:
    backend, user = make_backend(), _user()
    decisions = await asyncio.gather(*(backend.admit(user, RateLimits(rpm=60), SMALL) for _ in range(200)))
    assert len(_admitted(decisions)) == 60
    refused = [d for d in decisions if not d.admitted]
    assert all(d.refused == (Dimension.RPM,) and 0 < d.retry_after_ms <= 60_000 for d in refused)
    assert all(d.reserved_tokens == 0 and d.reservation is None for d in refused)


@pytest.mark.redis
async def test_100_rpm_shared_by_three_instances_admits_exactly_100(redis_server: RedisServer) -> None:
    instances = [
        FailoverBackend(
            RedisRateLimitBackend(
                redis_endpoint(redis_server.url, connect_timeout_s=LOADED_MACHINE_TIMEOUT_S),
                timeout_s=LOADED_MACHINE_TIMEOUT_S,
            ),
            InProcessRateLimitBackend(),
            3,
        )
        for _ in range(3)
    ]
    user, limits = _user(), RateLimits(rpm=100)
    try:
        decisions = await asyncio.gather(*(instances[i % 3].admit(user, limits, SMALL) for i in range(300)))
        assert len(_admitted(decisions)) == 100
        assert not any(instance.degraded for instance in instances)
        assert sum(instance.local_decisions for instance in instances) == 0
    finally:
        for instance in instances:
            await instance.close()


# -- days, tokens, refusals --------------------------------------------------------------------------------------


async def test_rpd_resets_at_midnight_utc(make_backend: BackendFactory) -> None:
    clock = FakeClock(_ms("2026-05-01T23:59:50"))
    backend, user, limits = make_backend(clock), _user(), RateLimits(rpd=5)
    for expected_today in range(1, 6):
        decision = await backend.admit(user, limits, SMALL)
        assert decision.admitted and decision.requests_today == expected_today
        clock.advance(1000)
    refused = await backend.admit(user, limits, SMALL)  # 23:59:55
    assert refused.refused == (Dimension.RPD,)
    assert refused.retry_after_ms == 5000
    clock.now_ms = _ms("2026-05-01T23:59:59.999")
    assert (await backend.admit(user, limits, SMALL)).refused == (Dimension.RPD,)
    clock.now_ms = _ms("2026-05-02T00:00:00")
    fresh = await backend.admit(user, limits, SMALL)
    assert fresh.admitted and fresh.requests_today == 1
    assert fresh.day_reset_ms == 86_400_000


async def test_tpm_500_prompt_1000_output_10000_tpm_at_most_6_then_headroom_returns(
    make_backend: BackendFactory,
) -> None:
    # min_output 600: the 1,000 tokens left after six calls cannot hold T_p + 600, so no seventh call is clamped in.
    backend, user, limits = make_backend(), _user(), RateLimits(tpm=10_000)
    demand = TokenDemand(prompt_tokens=500, n=1, output_limit=1000, min_output=600)
    decisions = await asyncio.gather(*(backend.admit(user, limits, demand) for _ in range(20)))
    admitted = _admitted(decisions)
    assert len(admitted) == 6
    assert all(d.reserved_tokens == 1500 and d.clamped_output_limit is None for d in admitted)
    assert all(d.refused == (Dimension.TPM,) for d in decisions if not d.admitted)
    for decision in admitted:  # each call used 200 tokens in all
        assert decision.reservation is not None
        backend.adjust(decision.reservation, 200)
    await backend.drain()
    after = await backend.admit(user, limits, demand)
    assert after.admitted and after.tokens_in_window == 6 * 200 + 1500


async def test_tpm_clamps_the_seventh_call_when_the_minimum_fits(make_backend: BackendFactory) -> None:
    backend, user, limits = make_backend(), _user(), RateLimits(tpm=10_000)
    demand = TokenDemand(prompt_tokens=500, n=1, output_limit=1000, min_output=1)
    decisions = [await backend.admit(user, limits, demand) for _ in range(8)]
    assert [d.clamped_output_limit for d in decisions[:7]] == [None] * 6 + [500]
    assert decisions[6].reserved_tokens == 1000 and decisions[6].tokens_in_window == 10_000
    assert decisions[7].refused == (Dimension.TPM,)


async def test_a_rejected_request_consumes_nothing(make_backend: BackendFactory) -> None:
    backend, user = make_backend(), _user()
    limits = RateLimits(rpm=3, tpm=1000, rpd=10)
    too_big = TokenDemand(prompt_tokens=1500, n=1, output_limit=10)
    refused = await backend.admit(user, limits, too_big)
    assert refused.refused == (Dimension.TPM,) and refused.retry_after_ms == 60_000  # larger than the limit itself
    counts = []
    for _ in range(3):
        decision = await backend.admit(user, limits, SMALL)
        counts.append((decision.requests_in_window, decision.requests_today, decision.tokens_in_window))
    assert counts == [(1, 1, 20), (2, 2, 40), (3, 3, 60)]
    over = await backend.admit(user, limits, SMALL)
    assert over.refused == (Dimension.RPM,)
    assert (over.requests_in_window, over.requests_today, over.tokens_in_window) == (3, 3, 60)


async def test_refund_returns_tokens_but_keeps_the_request_counts(make_backend: BackendFactory) -> None:
    backend, user = make_backend(), _user()
    limits, demand = RateLimits(rpm=10, tpm=3000), TokenDemand(1000, 1, 500)
    first = await backend.admit(user, limits, demand)
    await backend.admit(user, limits, demand)
    assert (await backend.admit(user, limits, demand)).refused == (Dimension.TPM,)
    assert first.reservation is not None
    backend.adjust(first.reservation, 0)
    await backend.drain()
    third = await backend.admit(user, limits, demand)
    assert third.admitted
    assert (third.requests_in_window, third.requests_today, third.tokens_in_window) == (3, 3, 3000)


async def test_a_queued_correction_frees_headroom_for_the_next_admission(make_backend: BackendFactory) -> None:
    """Without any drain: an admission Redis refuses for TPM while this instance still queues corrections of the
    same end user sends them and asks again."""
    backend, user = make_backend(), _user()
    limits, demand = RateLimits(tpm=3000), TokenDemand(1000, 1, 500)
    first = await backend.admit(user, limits, demand)
    assert (await backend.admit(user, limits, demand)).tokens_in_window == 3000
    assert first.reservation is not None
    backend.adjust(first.reservation, 0)  # the call failed before any output (a refund)
    third = await backend.admit(user, limits, demand)
    assert third.admitted and (third.requests_in_window, third.tokens_in_window) == (3, 3000)


@pytest.mark.redis
async def test_a_queued_correction_reaches_other_instances_on_its_own(redis_server: RedisServer) -> None:
    """No admission follows on this instance: the correction goes out by itself after ``CORRECTION_DELAY_S``."""
    mine, other = (
        RedisRateLimitBackend(redis_endpoint(redis_server.url), timeout_s=LOADED_MACHINE_TIMEOUT_S) for _ in range(2)
    )
    user, limits, demand = _user(), RateLimits(tpm=3000), TokenDemand(1000, 1, 500)
    try:
        first = await mine.admit(user, limits, demand)
        assert first.reservation is not None
        mine.adjust(first.reservation, 100)
        await asyncio.sleep(CORRECTION_DELAY_S * 10)
        seen = await other.admit(user, limits, demand)
        assert seen.tokens_in_window == 100 + 1500
    finally:
        await mine.close()
        await other.close()


@pytest.mark.redis
@pytest.mark.parametrize("reloaded", [(), (ADMIT_LUA,)], ids=["both-missing", "correction-script-missing"])
async def test_flushed_scripts_reload_without_counting_twice_or_losing_a_correction(
    redis_server: RedisServer, reloaded: tuple[str, ...]
) -> None:
    """SCRIPT FLUSH (a restarted Redis) while a correction waits, then an admission refused for TPM that sends it
    ahead of asking again; in the second case another instance loaded the admission script meanwhile, so only the
    correction answers NOSCRIPT. What did not run runs again, the admission counts once and the correction once."""
    backend = RedisRateLimitBackend(redis_endpoint(redis_server.url), timeout_s=LOADED_MACHINE_TIMEOUT_S)
    user, limits, demand = _user(), RateLimits(rpm=10, tpm=3000), TokenDemand(1000, 1, 500)
    try:
        first = await backend.admit(user, limits, demand)
        await backend.admit(user, limits, demand)
        assert first.reservation is not None
        backend.adjust(first.reservation, 200)
        admin = redis.asyncio.Redis.from_url(redis_server.url)
        await admin.script_flush()
        for source in reloaded:
            await admin.script_load(source)
        await admin.aclose()
        third = await backend.admit(user, limits, TokenDemand(1000, 1, 300))
        assert third.admitted
        assert (third.requests_in_window, third.tokens_in_window) == (3, 200 + 1500 + 1300)
    finally:
        await backend.close()


async def test_retry_after_values(make_backend: BackendFactory) -> None:
    clock = FakeClock(_ms("2026-05-01T12:00:00"))
    backend, user = make_backend(clock), _user()
    limits, demand = RateLimits(rpm=2, tpm=2500, rpd=100), TokenDemand(500, 1, 500)
    await backend.admit(user, limits, demand)  # 1,000 tokens at 0 s
    clock.advance(10_000)
    await backend.admit(user, limits, demand)  # 1,000 tokens at 10 s
    clock.advance(10_000)
    rpm = await backend.admit(user, limits, TokenDemand(100, 1, 100))
    assert rpm.refused == (Dimension.RPM,) and rpm.retry_after_ms == 40_000  # the 0 s admission leaves at 60 s
    both = await backend.admit(user, limits, demand)  # needs 1,000 tokens, 500 left: the 0 s admission must leave
    assert both.refused == (Dimension.RPM, Dimension.TPM) and both.retry_after_ms == 40_000
    clock.advance(40_000)  # 60 s: the first admission left the window
    assert (await backend.admit(user, limits, demand)).admitted
    midnight = await backend.admit(_user(), RateLimits(rpd=1), SMALL)
    assert midnight.admitted
    clock.now_ms = _ms("2026-05-01T23:00:00.250")
    day_user = _user()
    await backend.admit(day_user, RateLimits(rpd=1), SMALL)
    day = await backend.admit(day_user, RateLimits(rpd=1), SMALL)
    assert day.refused == (Dimension.RPD,) and day.retry_after_ms == 3_599_750


async def test_window_slides_by_the_millisecond(make_backend: BackendFactory) -> None:
    clock = FakeClock(_ms("2026-05-01T12:00:00"))
    backend, user, limits = make_backend(clock), _user(), RateLimits(rpm=1)
    assert (await backend.admit(user, limits, SMALL)).admitted
    clock.advance(59_999)
    early = await backend.admit(user, limits, SMALL)
    assert early.refused == (Dimension.RPM,) and early.retry_after_ms == 1
    assert early.window_reset_ms == 1
    clock.advance(1)
    assert (await backend.admit(user, limits, SMALL)).admitted


@pytest.mark.redis
async def test_redis_and_in_process_agree_on_a_random_history(redis_server: RedisServer) -> None:
    """The Lua script mirrors the in-process backend: the same operations give the same decisions."""
    clock = FakeClock(_ms("2026-05-01T23:58:00"))
    memory = InProcessRateLimitBackend(clock)
    shared = RedisRateLimitBackend(
        redis_endpoint(redis_server.url, connect_timeout_s=LOADED_MACHINE_TIMEOUT_S),
        clock_ms=clock,
        timeout_s=LOADED_MACHINE_TIMEOUT_S,
    )
    rng = random.Random(20260501)
    users = [_user() for _ in range(3)]
    limits = RateLimits(rpm=5, tpm=6000, rpd=40)
    pairs: list[tuple[Decision, Decision]] = []
    try:
        for _ in range(600):
            clock.advance(rng.choice((0, 5, 250, 1500, 4000, 9000)))
            user = rng.choice(users)
            if pairs and rng.random() < 0.3:
                left, right = rng.choice(pairs)
                if left.reservation is not None and right.reservation is not None:
                    tokens = rng.randrange(0, 2500)
                    memory.adjust(left.reservation, tokens)
                    shared.adjust(right.reservation, tokens)
                    await shared.drain()
                continue
            demand = TokenDemand(rng.randrange(0, 1500), rng.choice((1, 1, 2)), rng.randrange(1, 1500), 50)
            mine, theirs = await memory.admit(user, limits, demand), await shared.admit(user, limits, demand)
            assert (mine.refused, mine.retry_after_ms, mine.reserved_tokens, mine.clamped_output_limit) == (
                theirs.refused,
                theirs.retry_after_ms,
                theirs.reserved_tokens,
                theirs.clamped_output_limit,
            )
            assert (mine.requests_in_window, mine.requests_today, mine.tokens_in_window) == (
                theirs.requests_in_window,
                theirs.requests_today,
                theirs.tokens_in_window,
            )
            assert (mine.window_reset_ms, mine.tokens_reset_ms, mine.day_reset_ms) == (
                theirs.window_reset_ms,
                theirs.tokens_reset_ms,
                theirs.day_reset_ms,
            )
            pairs.append((mine, theirs))
        assert {d.refused[0] for d, _ in pairs if d.refused} == {Dimension.RPM, Dimension.RPD, Dimension.TPM}
        assert any(d.clamped_output_limit is not None for d, _ in pairs)
    finally:
        await shared.close()


# -- Redis going away --------------------------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_killed_mid_traffic_degrades_to_local_shares_and_recovers() -> None:
    server = await asyncio.to_thread(start_redis_or_skip)
    failover = FailoverBackend(RedisRateLimitBackend(redis_endpoint(server.url)), InProcessRateLimitBackend(), 2)
    busy, limits = _user(), RateLimits(rpm=1_000_000)
    stop = asyncio.Event()
    errors: list[BaseException] = []

    async def traffic() -> None:
        while not stop.is_set():
            try:
                decision = await failover.admit(busy, limits, SMALL)
                if decision.reservation is not None:
                    failover.adjust(decision.reservation, 5)
            except BaseException as exc:
                errors.append(exc)
                raise
            await asyncio.sleep(0.001)

    workers = [asyncio.create_task(traffic()) for _ in range(20)]
    try:
        await asyncio.sleep(0.2)
        assert not failover.degraded and failover.local_decisions == 0
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(0.3)
        assert failover.degraded
        assert failover.local_decisions > 0
        # Degraded: this instance enforces ⌊10 ÷ 2⌋ = 5 on its own.
        user = _user()
        local = [await failover.admit(user, RateLimits(rpm=10), SMALL) for _ in range(7)]
        assert [d.admitted for d in local] == [True] * 5 + [False] * 2
        assert local[0].limits == RateLimits(rpm=5)
        assert local[5].refused == (Dimension.RPM,)
        await asyncio.to_thread(server.start)
        # probes run at most once a second; a loaded machine may need a few before Redis answers in time
        deadline = asyncio.get_running_loop().time() + 10
        while not await failover.probe():
            assert asyncio.get_running_loop().time() < deadline, "never returned to Redis"
            await asyncio.sleep(0.5)
        back = await failover.admit(_user(), RateLimits(rpm=10), SMALL)
        assert back.reservation is not None and back.reservation.origin == "redis"
        assert back.limits == RateLimits(rpm=10)
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
        await failover.close()
        await asyncio.to_thread(server.stop)
    assert errors == []


@pytest.mark.redis
async def test_unreachable_redis_never_raises() -> None:
    server = await asyncio.to_thread(start_redis_or_skip)
    url = server.url
    await asyncio.to_thread(server.stop)  # nothing listens there any more
    shared = RedisRateLimitBackend(
        redis_endpoint(url, connect_timeout_s=LOADED_MACHINE_TIMEOUT_S), timeout_s=LOADED_MACHINE_TIMEOUT_S
    )
    failover = FailoverBackend(shared, InProcessRateLimitBackend(), 3)
    try:
        decision = await failover.admit(_user(), RateLimits(rpm=100, tpm=1000), SMALL)
        assert decision.admitted and failover.degraded and failover.local_decisions == 1
        assert decision.limits == RateLimits(rpm=33, tpm=333)
        assert decision.reservation is not None
        failover.adjust(decision.reservation, 0)
        assert not await failover.probe()
        shared.adjust(decision.reservation, 0)  # a Redis correction that fails is logged, not raised
        await failover.drain()
    finally:
        await failover.close()


# -- the limiter service -----------------------------------------------------------------------------------------


class FakeSource:
    def __init__(self) -> None:
        self.override: RateLimits | None = None
        self.defaults = RateLimits()
        self.loads = 0

    async def limits_of(self, platform_id: str, end_user_id: str) -> tuple[RateLimits | None, RateLimits]:
        self.loads += 1
        await asyncio.sleep(0.01)
        return self.override, self.defaults

    async def limits_of_many(self, end_users: list[tuple[str, str]]) -> dict[str, tuple[RateLimits | None, RateLimits]]:
        self.loads += 1  # one query for all of them
        await asyncio.sleep(0.01)
        return {user: (self.override, self.defaults) for _platform, user in end_users}


class MonotonicClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_limiter_raises_429_with_retry_after_and_headers() -> None:
    source = FakeSource()
    source.defaults = RateLimits(rpm=2, tpm=10_000)
    limiter = RateLimiter(InProcessRateLimitBackend(), LimitCache(source))
    user = _user()
    first = await limiter.admit("p", user, TokenDemand(500, 1, 1000))
    assert first.headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "60s",
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "8500",
        "x-ratelimit-reset-tokens": "60s",
    }
    limiter.adjust(first, 300)
    await limiter.admit("p", user, TokenDemand(500, 1, 1000))
    with pytest.raises(RateLimited) as caught:
        await limiter.admit("p", user, TokenDemand(500, 1, 1000))
    error = caught.value
    assert error.status == 429 and error.code == "rate_limit_exceeded"
    assert "requests per minute (RPM)" in error.message
    assert 59 <= int(error.headers["retry-after"]) <= 60
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["x-ratelimit-remaining-tokens"] == str(10_000 - 300 - 1500)
    assert limiter.rejections == {"rpm": 1, "rpd": 0, "tpm": 0}


async def test_limiter_clamp_and_refund() -> None:
    source = FakeSource()
    source.override = RateLimits(tpm=2000)
    limiter = RateLimiter(InProcessRateLimitBackend(), LimitCache(source))
    user = _user()
    full = await limiter.admit("p", user, TokenDemand(500, 1, 1000))
    clamped = await limiter.admit("p", user, TokenDemand(100, 2, 1000))
    assert (full.clamped_output_limit, clamped.clamped_output_limit) == (None, 200)
    assert clamped.reserved_tokens == 500
    with pytest.raises(RateLimited) as caught:
        await limiter.admit("p", user, TokenDemand(100, 1, 1000))
    assert "tokens per minute (TPM)" in caught.value.message
    limiter.refund(full)
    again = await limiter.admit("p", user, TokenDemand(500, 1, 1000))
    assert again.clamped_output_limit is None


async def test_platform_keys_and_unlimited_end_users_skip_the_backend() -> None:
    source = FakeSource()
    backend = InProcessRateLimitBackend()
    limiter = RateLimiter(backend, LimitCache(source))
    assert (await limiter.admit("p", None, SMALL)).headers == {}
    assert source.loads == 0
    unlimited = await limiter.admit("p", _user(), SMALL)
    assert unlimited.decision is None and unlimited.headers == {} and unlimited.clamped_output_limit is None
    limiter.adjust(unlimited, 10)  # nothing to correct
    limiter.refund(unlimited)
    assert not limiter.degraded and limiter.local_decisions == 0


async def test_limit_cache_lives_under_a_second_shares_loads_and_invalidates() -> None:
    source, clock = FakeSource(), MonotonicClock()
    cache = LimitCache(source, clock=clock, keep_fresh_s=0)  # no reloads but those the reads start
    results = await asyncio.gather(*(cache.get("p", "u") for _ in range(50)))
    assert source.loads == 1 and {r.resolution for r in results} == {Resolution.NONE}
    source.override = RateLimits(rpm=5)
    clock.now += 0.85
    assert (await cache.get("p", "u")).resolution is Resolution.NONE  # still cached
    clock.now += 0.1  # 0.95 s after the read began: a change committed since is seen
    assert (await cache.get("p", "u")).limits == RateLimits(rpm=5)
    source.override = RateLimits(rpm=6)
    cache.invalidate("u")
    assert (await cache.get("p", "u")).limits == RateLimits(rpm=6)
    source.defaults = RateLimits(tpm=9)
    source.override = None
    cache.invalidate()
    assert (await cache.get("p", "u")).resolution is Resolution.DEFAULT
    assert source.loads == 4


class FlakySource(FakeSource):
    """The database goes away: every query raises what the SQL source raises then."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def limits_of(self, platform_id: str, end_user_id: str) -> tuple[RateLimits | None, RateLimits]:
        if self.down:
            raise ServiceUnavailable("The database is unreachable.")
        return await super().limits_of(platform_id, end_user_id)

    async def limits_of_many(self, end_users: list[tuple[str, str]]) -> dict[str, tuple[RateLimits | None, RateLimits]]:
        if self.down:
            raise ServiceUnavailable("The database is unreachable.")
        return await super().limits_of_many(end_users)


async def test_a_failed_background_reload_is_logged_and_the_next_read_past_the_entry_reports_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, clock = FlakySource(), MonotonicClock()
    cache = LimitCache(source, clock=clock, keep_fresh_s=0)
    await cache.get("p", "u")
    source.down = True
    clock.now += CACHE_TTL_S / 2 + 0.01
    assert (await cache.get("p", "u")).resolution is Resolution.NONE  # served; the reload fails in the background
    for _ in range(400):
        if any(r.getMessage() == "background rate-limit reload failed" for r in caplog.records):
            break
        await asyncio.sleep(0.01)
    assert [r.levelname for r in caplog.records if r.getMessage() == "background rate-limit reload failed"] == [
        "WARNING"
    ]
    clock.now += CACHE_TTL_S / 2  # past the entry's life
    with pytest.raises(ServiceUnavailable):
        await cache.get("p", "u")
    source.down = False
    assert (await cache.get("p", "u")).resolution is Resolution.NONE
    await cache.close()


async def test_a_request_waiting_for_a_gathering_reload_that_fails_gets_the_error() -> None:
    source, clock = FlakySource(), MonotonicClock()
    cache = LimitCache(source, clock=clock, gather_s=60, keep_fresh_s=0)
    await cache.get("p", "u")
    clock.now += CACHE_TTL_S - 0.01
    await cache.get("p", "u")  # queues the reload, gathering for a minute
    source.down = True
    clock.now += 0.02
    loads = source.loads
    with pytest.raises(ServiceUnavailable):
        await asyncio.wait_for(cache.get("p", "u"), 20)
    assert source.loads == loads  # the gathered reload was the one that failed, not a second load
    await cache.close()


async def test_closing_the_limiter_leaves_no_reload_running() -> None:
    source, clock = FakeSource(), MonotonicClock()
    limiter = RateLimiter(InProcessRateLimitBackend(), LimitCache(source, clock=clock))
    await limiter.effective_limits("p", "u")  # kept fresh from here: a keep timer is armed
    clock.now += CACHE_TTL_S / 2 + 0.01
    await limiter.effective_limits("p", "u")  # and a reload is gathering
    await limiter.close()
    loads = source.loads
    await asyncio.sleep(0.6)
    assert source.loads == loads
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_an_unreachable_database_is_503(tmp_path: Path) -> None:
    """The real limit source on a PostgreSQL server that is not there: 503, never a driver exception."""
    settings = make_settings(tmp_path, f"postgresql://tollway@127.0.0.1:{free_port()}/tollway")
    engine = create_engine(settings)
    limiter = RateLimiter(InProcessRateLimitBackend(), LimitCache(RateOverrideStore(engine)))
    try:
        with pytest.raises(ServiceUnavailable, match="database is unreachable"):
            await limiter.admit("p", _user(), SMALL)
    finally:
        await limiter.close()
        await engine.dispose()
