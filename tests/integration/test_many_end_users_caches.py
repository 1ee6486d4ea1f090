"""The hot path's per-end-user caches with many end users in use (issue 18), on the real SQL stores (SQLite and
PostgreSQL): background refreshes of keys and of rate limits are gathered into one query, not one per end user,
keep what is in use fresh without waiting for a request, and still carry every change (a revoked key, a new
override) within the caches' lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import STORES, database_url_for, make_settings
from tollway.domain.platform_settings import RateLimits
from tollway.errors import AuthenticationError
from tollway.services.auth import REFRESH_AFTER_S, Authenticator
from tollway.services.management.end_users import EndUsers
from tollway.services.management.platforms import Platforms
from tollway.services.ratelimit import CACHE_TTL_S, LimitCache
from tollway.storage.sql.api_keys import ApiKeyStore
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.end_users import EndUserStore
from tollway.storage.sql.keystore import KeyStore
from tollway.storage.sql.migrate import upgrade
from tollway.storage.sql.rate_overrides import RateOverrideStore
from tollway.storage.sql.tables import api_keys
from tollway.storage.sql.tenants import PlatformStore

USERS = 30


@dataclass
class Crowd:
    engine: AsyncEngine
    platform_id: str
    users: list[tuple[str, str, str]]  # (end-user id, key id, raw key)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=STORES)
async def crowd(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Crowd]:
    settings = make_settings(tmp_path, database_url_for(request.param, tmp_path, request))
    await upgrade(settings)
    engine = create_engine(settings)
    created = await Platforms(PlatformStore(engine)).create({"name": "Crowd"})
    end_users = EndUsers(EndUserStore(engine))
    users = []
    for i in range(USERS):
        creation, raw = await end_users.create(created.platform["id"], {"external_id": f"u{i}"})
        users.append((creation.end_user["id"], creation.api_key["id"], raw))
    try:
        yield Crowd(engine, created.platform["id"], users)
    finally:
        await engine.dispose()


@pytest.fixture
def statements(crowd: Crowd) -> Iterator[list[str]]:
    """Every query the engine sends from now on (SQLite's ``BEGIN`` aside)."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append(statement)

    sa.event.listen(crowd.engine.sync_engine, "before_cursor_execute", note)
    yield sent
    sa.event.remove(crowd.engine.sync_engine, "before_cursor_execute", note)


async def _eventually(done: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    """Polls ``done`` until it holds: background work on a loaded machine takes as long as it takes."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not await done():
        assert asyncio.get_running_loop().time() < deadline, "the background reload never finished"
        await asyncio.sleep(0.02)


async def _no_operator() -> bytes | None:
    return None


async def test_key_refreshes_of_many_end_users_are_one_query_and_drop_a_revoked_key(
    crowd: Crowd, statements: list[str]
) -> None:
    clock = Clock()
    auth = Authenticator(KeyStore(crowd.engine), _no_operator, 0, clock=clock, keep_fresh_s=0)
    for user, _key, raw in crowd.users:
        assert (await auth.authenticate_key(raw, "127.0.0.1")).end_user_id == user
    assert sum("api_keys" in s for s in statements) == USERS  # first sight: one lookup each
    _revoked_user, revoked_key, revoked_raw = crowd.users[0]
    assert await ApiKeyStore(crowd.engine).revoke(crowd.platform_id, revoked_key, datetime.now(UTC))
    statements.clear()

    clock.now += REFRESH_AFTER_S + 0.01  # past the refresh point, inside the cache's lifetime
    for user, _key, raw in crowd.users:  # still served from the cache, the revoked key included (≤ 0.9 s)
        assert (await auth.authenticate_key(raw, "127.0.0.1")).end_user_id == user
    assert statements == []

    # The gathered refresh runs in the background: until it has stored its answers the revoked key is still served
    # from the cache (no query); once it has, the key is refused (looked up once more, as a key not found is).
    async def refused() -> bool:
        try:
            await auth.authenticate_key(revoked_raw, "127.0.0.1")
        except AuthenticationError:
            return True
        return False

    await _eventually(refused)
    assert sum("api_keys" in s for s in statements) == 2  # the one gathered refresh, then the refused key's lookup
    for user, _key, raw in crowd.users[1:]:
        assert (await auth.authenticate_key(raw, "127.0.0.1")).end_user_id == user
    assert sum("api_keys" in s for s in statements) == 2  # the refused key was looked up once more, no one else


async def test_limit_reloads_of_many_end_users_are_gathered_and_see_a_new_override(
    crowd: Crowd, statements: list[str]
) -> None:
    clock, store = Clock(), RateOverrideStore(crowd.engine)
    cache = LimitCache(store, clock=clock, keep_fresh_s=0)
    for user, _key, _raw in crowd.users:
        assert (await cache.get(crowd.platform_id, user)).limits == RateLimits()
    changed = crowd.users[3][0]
    assert await store.put(crowd.platform_id, changed, RateLimits(rpm=7, tpm=None, rpd=9), datetime.now(UTC))
    statements.clear()

    clock.now += CACHE_TTL_S / 2 + 0.01  # past half the entry's life: served, and reloaded in the background
    for user, _key, _raw in crowd.users:
        assert (await cache.get(crowd.platform_id, user)).limits == RateLimits()
    assert statements == []

    async def reloaded() -> bool:  # served from the cache (no query) until the gathered reload has stored its answer
        return (await cache.get(crowd.platform_id, changed)).limits == RateLimits(rpm=7, rpd=9)

    await _eventually(reloaded)
    assert len(statements) == 2  # the platforms' defaults and the overrides, for all 30 end users
    for user, _key, _raw in crowd.users:
        expected = RateLimits(rpm=7, rpd=9) if user == changed else RateLimits()
        assert (await cache.get(crowd.platform_id, user)).limits == expected
    assert len(statements) == 2


async def test_a_request_waiting_for_a_gathered_reload_does_not_wait_for_the_gathering(
    crowd: Crowd, statements: list[str]
) -> None:
    """An entry that expires while its reload is still gathering company: the request starts the reload at once
    and shares it, instead of waiting out the gathering or loading a second time."""
    clock, store = Clock(), RateOverrideStore(crowd.engine)
    cache = LimitCache(store, clock=clock, gather_s=60, keep_fresh_s=0)
    user = crowd.users[0][0]
    await cache.get(crowd.platform_id, user)
    clock.now += CACHE_TTL_S - 0.01
    await cache.get(crowd.platform_id, user)  # queues the reload
    assert await store.put(crowd.platform_id, user, RateLimits(rpm=3), datetime.now(UTC))
    statements.clear()
    clock.now += 0.02  # expired

    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await cache.get(crowd.platform_id, user)).limits == RateLimits(rpm=3)
    assert loop.time() - started < 30  # not held back by the 60 s gathering window
    assert len(statements) == 2  # one reload (two statements), shared


async def test_keys_in_use_stay_fresh_between_requests(crowd: Crowd, statements: list[str]) -> None:
    """The cache's clock stands still, so an entry never expires here: only the refreshes that keep used keys fresh,
    with no request in between, can drop a revoked key."""
    clock = Clock()
    auth = Authenticator(KeyStore(crowd.engine), _no_operator, 0, clock=clock)
    for _user, _key, raw in crowd.users:
        await auth.authenticate_key(raw, "127.0.0.1")
    clock.now += REFRESH_AFTER_S + 0.01
    for _user, _key, raw in crowd.users:  # queues the first gathered refresh
        await auth.authenticate_key(raw, "127.0.0.1")
    await asyncio.sleep(0.3)
    _user, revoked_key, revoked_raw = crowd.users[0]
    assert await ApiKeyStore(crowd.engine).revoke(crowd.platform_id, revoked_key, datetime.now(UTC))
    statements.clear()

    await asyncio.sleep(1.2)  # no request: the next refreshes come by themselves, every ~0.5 s, one query each

    refreshes = sum("api_keys" in s for s in statements)
    assert 1 <= refreshes <= 3, statements
    with pytest.raises(AuthenticationError):
        await auth.authenticate_key(revoked_raw, "127.0.0.1")
    assert (await auth.authenticate_key(crowd.users[1][2], "127.0.0.1")).end_user_id == crowd.users[1][0]


async def test_limits_in_use_stay_fresh_between_requests(crowd: Crowd, statements: list[str]) -> None:
    clock, store = Clock(), RateOverrideStore(crowd.engine)
    cache = LimitCache(store, clock=clock)
    for user, _key, _raw in crowd.users:
        await cache.get(crowd.platform_id, user)
    clock.now += CACHE_TTL_S / 2 + 0.01
    for user, _key, _raw in crowd.users:  # queues the first gathered reload
        await cache.get(crowd.platform_id, user)
    await asyncio.sleep(0.3)
    changed = crowd.users[5][0]
    assert await store.put(crowd.platform_id, changed, RateLimits(rpm=4), datetime.now(UTC))
    statements.clear()

    await asyncio.sleep(1.2)  # no request: the reloads come by themselves, two statements each

    assert 2 <= len(statements) <= 6, statements
    assert (await cache.get(crowd.platform_id, changed)).limits == RateLimits(rpm=4)
    assert (await cache.get(crowd.platform_id, crowd.users[6][0])).limits == RateLimits()


async def test_gathered_reads_answer_for_any_number_of_end_users(crowd: Crowd) -> None:
    """``find_active_many`` and ``limits_of_many`` over 1, 2, 3 and 7 end users (one list parameter on PostgreSQL,
    an expanding IN on SQLite): each answers for exactly the keys and end users asked about, unknown ones left out
    or given no limits, an override only for its own platform."""
    keys, limits = KeyStore(crowd.engine), RateOverrideStore(crowd.engine)
    async with crowd.engine.connect() as conn:
        rows = await conn.execute(sa.select(api_keys.c.id, api_keys.c.key_hash, api_keys.c.end_user_id))
        digest_of = {row.end_user_id: bytes(row.key_hash) for row in rows}
    with_override = crowd.users[1][0]
    assert await limits.put(crowd.platform_id, with_override, RateLimits(rpm=5), datetime.now(UTC))
    for size in (1, 2, 3, 7):
        users = [user for user, _key, _raw in crowd.users[:size]]
        found = await keys.find_active_many([digest_of[user] for user in users] + [b"x" * 32])
        assert {digest: record.end_user_id for digest, record in found.items()} == {digest_of[u]: u for u in users}
        asked = [(crowd.platform_id, user) for user in users] + [("no-such-platform", crowd.users[9][0])]
        expected = {user: (RateLimits(rpm=5) if user == with_override else None, RateLimits()) for user in users}
        assert await limits.limits_of_many(asked) == {**expected, crowd.users[9][0]: (None, RateLimits())}
