"""Rate limits exact across both failover transitions (SPEC §10, issue 21 item 3): two instances (two
``FailoverBackend``s, each with its own Redis connection and local ledger) share one real redis-server, which is
killed and restarted empty, or frozen with SIGSTOP; every test runs well inside one 60 s window, so the admissions it
counts are those of one 60 s interval. The in-process ledger's bookkeeping is tested first, without Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio

from tests.support.redis_server import RedisServer, start_redis_or_skip
from tollway.domain.platform_settings import RateLimits
from tollway.domain.ratelimit import DAY_MS, Decision, Dimension, TokenDemand
from tollway.services.ratelimit import FailoverBackend
from tollway.settings import redis_endpoint
from tollway.storage.ratelimit.memory import InProcessRateLimitBackend
from tollway.storage.ratelimit.redis import RedisRateLimitBackend

SMALL = TokenDemand(prompt_tokens=10, n=1, output_limit=10)
HUNDRED = TokenDemand(prompt_tokens=50, n=1, output_limit=50, min_output=50)  # never clamped: all 100 or nothing
SETTLE_S = 1.0  # the settling minute, shortened


def _user() -> str:
    return str(uuid.uuid4())


# -- the ledger (in process) ---------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


async def test_the_ledger_charges_recorded_admissions_to_the_local_share_and_lists_what_to_write_back() -> None:
    clock = FakeClock(100 * DAY_MS + 1_000)
    ledger = InProcessRateLimitBackend(clock)
    user = _user()
    for i in range(8):
        ledger.record(user, RateLimits(rpm=30), f"r:{i}", 20)  # admitted by Redis
    assert ledger.unshared(everything=False).users == ()
    clock.now_ms += 1_000
    share = RateLimits(rpm=15, tpm=500)
    local = [await ledger.admit(user, share, SMALL) for _ in range(9)]
    assert [d.admitted for d in local] == [True] * 7 + [False] * 2  # 15 - 8 of its own
    assert local[0].tokens_in_window == 8 * 20 + 20

    write_back = ledger.unshared(everything=False)
    assert write_back.as_of_ms == clock.now_ms
    (mine,) = write_back.users
    assert mine.key == user and mine.day == 100 and mine.requests == 7 and mine.local_requests == 7
    assert [stamp for _, stamp, _ in mine.entries] == [100 * DAY_MS + 2_000] * 7
    everything = ledger.unshared(everything=True).users[0]
    assert len(everything.entries) == 15 and everything.requests == 15 and everything.local_requests == 7

    ledger.mark_shared(write_back)
    assert ledger.unshared(everything=False).users == ()
    # Corrections reach entries by either id; a refusal by Redis after the share admitted withdraws the admission.
    reservation = local[0].reservation
    assert reservation is not None
    ledger.adjust(reservation, 0)
    clock.now_ms += 59_500  # the recorded ones left the window, the local ones (1 s later) not yet
    more = await ledger.admit(user, share, SMALL)
    assert more.requests_in_window == 8 and more.tokens_in_window == 6 * 20 + 20
    assert more.reservation is not None
    ledger.forget(more.reservation.id)
    ledger.relabel(more.reservation.id, "r:gone", 0)  # forgotten: a no-op
    after = await ledger.admit(user, share, SMALL)
    assert after.requests_in_window == 8 and after.requests_today == 16
    assert after.reservation is not None
    ledger.relabel(after.reservation.id, "r:new", 5)
    assert ledger.unshared(everything=False).users == ()
    (current,) = ledger.unshared(everything=True).users
    assert (current.requests, current.local_requests) == (16, 0)
    assert (reservation.id, 100 * DAY_MS + 2_000, 0) in current.entries
    assert current.entries[-1] == ("r:new", clock.now_ms, 5)
    assert len(current.entries) == 8


async def test_the_ledger_keeps_a_day_count_only_for_end_users_with_an_rpd_limit() -> None:
    clock = FakeClock(100 * DAY_MS)
    ledger = InProcessRateLimitBackend(clock)
    minute_only, daily = _user(), _user()
    ledger.record(minute_only, RateLimits(rpm=10), "r:1", 0)
    ledger.record(daily, RateLimits(rpm=10, rpd=100), "r:2", 0)
    clock.now_ms += 61_000
    await ledger.admit(_user(), RateLimits(rpm=1), SMALL)  # the once-a-minute sweep
    listed = {u.key: (u.entries, u.requests) for u in ledger.unshared(everything=True).users}
    assert listed[daily] == ((), 1) and minute_only not in listed


# -- two instances on a real Redis ---------------------------------------------------------------------------------


@dataclass
class Pair:
    server: RedisServer
    a: FailoverBackend
    b: FailoverBackend
    admin: redis.asyncio.Redis

    async def window(self, user: str) -> tuple[int, dict[str, str]]:
        count = await self.admin.zcard(f"tollway:rl:{{{user}}}:w")
        state = await self.admin.hgetall(f"tollway:rl:{{{user}}}:s")
        return int(count), {k.decode(): v.decode() for k, v in state.items()}


def _instance(server: RedisServer) -> FailoverBackend:
    shared = RedisRateLimitBackend(redis_endpoint(server.url, connect_timeout_s=0.5), timeout_s=0.5)
    # Probes only when a test asks (an admission, ``probe``), so a test decides which instance returns first.
    return FailoverBackend(
        shared, InProcessRateLimitBackend(), 2, probe_interval_s=0.05, settle_s=SETTLE_S, probe_when_idle=False
    )


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    server = await asyncio.to_thread(start_redis_or_skip)
    a, b = _instance(server), _instance(server)
    admin = redis.asyncio.Redis.from_url(server.url)
    try:
        yield Pair(server, a, b, admin)
    finally:
        server.thaw()
        await admin.aclose()
        await a.close()
        await b.close()
        await asyncio.to_thread(server.stop)


async def _admit(
    instance: FailoverBackend, user: str, limits: RateLimits, times: int, demand: TokenDemand = SMALL
) -> list[Decision]:
    return [d for d in [await instance.admit(user, limits, demand) for _ in range(times)] if d.admitted]


async def _back_on_redis(instance: FailoverBackend) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while not await instance.probe():
        assert asyncio.get_running_loop().time() < deadline, "never returned to Redis"
        await asyncio.sleep(0.06)


@pytest.mark.redis
async def test_killed_then_restarted_empty_two_instances_admit_exactly_the_limit(pair: Pair) -> None:
    """Issue 21 item 3 admitted 76 with RPM 30; now: 16 through Redis, 14 on the local shares (15 each, less each
    instance's own 8), and nothing once the empty Redis is back: exactly 30."""
    user, rpm30 = _user(), RateLimits(rpm=30)
    before = await _admit(pair.a, user, rpm30, 8) + await _admit(pair.b, user, rpm30, 8)
    assert len(before) == 16 and all(d.reservation and d.reservation.origin == "redis" for d in before)

    await asyncio.to_thread(pair.server.kill)
    away = await _admit(pair.a, user, rpm30, 20) + await _admit(pair.b, user, rpm30, 20)
    assert pair.a.degraded and pair.b.degraded
    assert len(away) == 14 and all(d.limits == RateLimits(rpm=15) for d in away)

    await asyncio.to_thread(pair.server.start)  # same port, empty
    await _back_on_redis(pair.b)  # b wrote back its 15 (8 + 7); a has not written back yet
    assert (await pair.window(user))[0] == 15
    # Redis alone would admit 15 more here; settling, b is held to its share, which its own 15 fill.
    assert await _admit(pair.b, user, rpm30, 20) == []
    await _back_on_redis(pair.a)
    count, state = await pair.window(user)
    assert count == 30 and state["n"] == "30"
    assert await _admit(pair.a, user, rpm30, 20) == []
    await asyncio.sleep(SETTLE_S + 0.1)  # settled: Redis alone decides, and holds all 30
    after = await _admit(pair.a, user, rpm30, 20) + await _admit(pair.b, user, rpm30, 20)
    assert after == []
    assert len(before) + len(away) + len(after) == 30
    assert (await pair.window(user))[0] == 30


@pytest.mark.redis
async def test_the_bound_when_one_instance_admitted_more_than_its_share_before_the_outage(pair: Pair) -> None:
    """What the design cannot know: b never saw this end user, so it admits its whole share while a, over its share
    already, admits nothing. The interval holds Σ max(own admissions, share) = 16 + 15 = 31, one over the limit
    (docs/rate-limits.md); both are written back, so nothing more is admitted until the window slides."""
    user, rpm30 = _user(), RateLimits(rpm=30)
    before = await _admit(pair.a, user, rpm30, 16)
    await asyncio.to_thread(pair.server.kill)
    away_a, away_b = await _admit(pair.a, user, rpm30, 20), await _admit(pair.b, user, rpm30, 20)
    assert (len(before), len(away_a), len(away_b)) == (16, 0, 15)
    await asyncio.to_thread(pair.server.start)
    await _back_on_redis(pair.a)
    await _back_on_redis(pair.b)
    await asyncio.sleep(SETTLE_S + 0.1)
    assert await _admit(pair.a, user, rpm30, 5) + await _admit(pair.b, user, rpm30, 5) == []
    assert (await pair.window(user))[0] == 31


@pytest.mark.redis
async def test_a_frozen_redis_stays_conservative(pair: Pair) -> None:
    """SIGSTOP: admissions time out (0.5 s here) and go local, charged with each instance's own 5; after SIGCONT
    only the local admissions are written back (Redis kept its windows), and Redis then holds at least all 30."""
    user, rpm30 = _user(), RateLimits(rpm=30)
    before = await _admit(pair.a, user, rpm30, 5) + await _admit(pair.b, user, rpm30, 5)
    pair.server.freeze()
    away = await _admit(pair.a, user, rpm30, 15) + await _admit(pair.b, user, rpm30, 15)
    assert pair.a.degraded and pair.b.degraded
    assert (len(before), len(away)) == (10, 20)
    pair.server.thaw()
    await _back_on_redis(pair.a)
    await _back_on_redis(pair.b)
    count, state = await pair.window(user)
    # An admission that timed out may still have run once Redis woke: counted twice, never forgotten.
    assert 30 <= count <= 32 and 30 <= int(state["n"]) <= 32
    await asyncio.sleep(SETTLE_S + 0.1)
    assert await _admit(pair.a, user, rpm30, 5) + await _admit(pair.b, user, rpm30, 5) == []


@pytest.mark.redis
async def test_rpd_since_midnight_is_exact_across_a_restart_empty(pair: Pair) -> None:
    user, rpd10 = _user(), RateLimits(rpd=10)
    before = await _admit(pair.a, user, rpd10, 3) + await _admit(pair.b, user, rpd10, 3)
    await asyncio.to_thread(pair.server.kill)
    away = await _admit(pair.a, user, rpd10, 5) + await _admit(pair.b, user, rpd10, 5)
    assert (len(before), len(away)) == (6, 4)  # ⌊10 ÷ 2⌋ = 5 each, less 3 of its own today
    await asyncio.to_thread(pair.server.start)
    await _back_on_redis(pair.a)
    await _back_on_redis(pair.b)
    assert (await pair.window(user))[1]["n"] == "10"
    await asyncio.sleep(SETTLE_S + 0.1)
    refused = [await pair.a.admit(user, rpd10, SMALL) for _ in range(3)]
    assert all(d.refused == (Dimension.RPD,) for d in refused)


@pytest.mark.redis
async def test_tpm_counts_and_corrections_follow_the_admission_to_whichever_side_holds_it(pair: Pair) -> None:
    """TPM 1000, 100 tokens a call. a: 3 through Redis, one corrected to 20 (280 of its own). Redis killed: a's
    share 500 admits 2 (480); a correction made while degraded of a call Redis admitted frees 100 locally, so one
    more (480). b: 5 (500). Redis back empty: 980 written back; a correction of a written-back local admission then
    reaches Redis too."""
    user, tpm = _user(), RateLimits(tpm=1000)
    through_redis = await _admit(pair.a, user, tpm, 3, HUNDRED)
    assert len(through_redis) == 3
    first, second = (d.reservation for d in through_redis[:2])
    assert first is not None and second is not None
    pair.a.adjust(first, 20)
    await pair.a.drain()
    assert (await pair.window(user))[1]["#"] == "220"

    await asyncio.to_thread(pair.server.kill)
    local_a = await _admit(pair.a, user, tpm, 5, HUNDRED)
    assert len(local_a) == 2 and local_a[-1].tokens_in_window == 420
    pair.a.adjust(second, 0)
    local_a += await _admit(pair.a, user, tpm, 5, HUNDRED)
    local_b = await _admit(pair.b, user, tpm, 8, HUNDRED)
    assert (len(local_a), len(local_b)) == (3, 5)
    assert local_a[-1].tokens_in_window == 420 and local_b[-1].tokens_in_window == 500

    await asyncio.to_thread(pair.server.start)
    await _back_on_redis(pair.a)
    await _back_on_redis(pair.b)
    count, state = await pair.window(user)
    assert count == 11 and state["#"] == "920"
    await asyncio.sleep(SETTLE_S + 0.1)
    refused = await pair.b.admit(user, tpm, HUNDRED)
    assert refused.refused == (Dimension.TPM,)
    local = local_a[0].reservation
    assert local is not None and local.origin == "memory"
    pair.a.adjust(local, 0)  # settled after the return: Redis holds it under its written-back id
    await pair.a.drain()
    assert (await pair.window(user))[1]["#"] == "820"
    assert (await pair.b.admit(user, tpm, HUNDRED)).admitted


@pytest.mark.redis
async def test_an_idle_degraded_instance_writes_back_and_returns_on_its_own(pair: Pair) -> None:
    user, rpm30 = _user(), RateLimits(rpm=30)
    idle = FailoverBackend(
        RedisRateLimitBackend(redis_endpoint(pair.server.url, connect_timeout_s=0.5), timeout_s=0.5),
        InProcessRateLimitBackend(),
        2,
        probe_interval_s=0.05,
    )
    try:
        assert len(await _admit(idle, user, rpm30, 4)) == 4
        await asyncio.to_thread(pair.server.kill)
        assert len(await _admit(idle, user, rpm30, 20)) == 11  # 15 less its own 4
        await asyncio.to_thread(pair.server.start)
        deadline = asyncio.get_running_loop().time() + 10
        while idle.degraded:  # no admission, no readiness check: the instance probes by itself
            assert asyncio.get_running_loop().time() < deadline, "never returned to Redis"
            await asyncio.sleep(0.05)
        assert (await pair.window(user))[0] == 15
    finally:
        await idle.close()


@pytest.mark.redis
async def test_many_end_users_are_written_back_in_batches(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tollway.services.ratelimit_failover.WRITE_BACK_BATCH", 5)
    users, rpm4 = [_user() for _ in range(12)], RateLimits(rpm=4)
    for user in users:
        assert len(await _admit(pair.a, user, rpm4, 1)) == 1
    await asyncio.to_thread(pair.server.kill)
    for user in users:
        assert len(await _admit(pair.a, user, rpm4, 3)) == 1  # ⌊4 ÷ 2⌋ less its own 1
    await asyncio.to_thread(pair.server.start)
    await _back_on_redis(pair.a)
    assert [(await pair.window(user))[0] for user in users] == [2] * 12
