"""The key cache's gathered refreshes (services/auth.py over services/gathered_refresh.py) with a key lookup that
the test can take down: a failed background refresh is logged and the key is served only until its entry's life,
after which the foreground lookup reports the failure; ``close`` leaves no refresh running."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tollway.domain.keys import key_digest
from tollway.domain.tenancy import KeyRecord
from tollway.errors import AuthenticationError
from tollway.services.auth import POSITIVE_CACHE_S, REFRESH_AFTER_S, Authenticator

RAW = "sk-user_" + "k" * 40


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Keys:
    """One live end-user key; ``down`` makes every lookup fail as an unreachable database would."""

    def __init__(self) -> None:
        self.record = KeyRecord(
            id="key_1",
            type="end_user",
            platform_id="plat_1",
            end_user_id="eu_1",
            scopes=("chat",),
            expires_at=None,
            last_used_at=datetime.now(UTC),
        )
        self.down = False
        self.queries = 0

    async def find_active(self, digest: bytes) -> KeyRecord | None:
        return (await self.find_active_many([digest])).get(digest)

    async def find_active_many(self, digests: list[bytes]) -> dict[bytes, KeyRecord]:
        self.queries += 1
        await asyncio.sleep(0)
        if self.down:
            raise ConnectionError("database unreachable")
        return {d: self.record for d in digests if d == key_digest(RAW)}

    async def find_active_by_id(self, key_id: str) -> KeyRecord | None:
        return None


async def _no_operator() -> bytes | None:
    return None


async def test_a_failed_background_refresh_is_logged_and_the_next_read_past_the_entry_reports_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys, clock = Keys(), Clock()
    auth = Authenticator(keys, _no_operator, 0, clock=clock, keep_fresh_s=0)
    assert (await auth.authenticate_key(RAW, "127.0.0.1")).end_user_id == "eu_1"
    keys.down = True
    clock.now += REFRESH_AFTER_S + 0.01
    assert (await auth.authenticate_key(RAW, "127.0.0.1")).end_user_id == "eu_1"  # served, refreshed behind
    for _ in range(400):
        if keys.queries == 2 and caplog.records:
            break
        await asyncio.sleep(0.01)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING", "background key lookup failed")]
    clock.now += POSITIVE_CACHE_S - REFRESH_AFTER_S  # past the entry's life
    with pytest.raises(ConnectionError):
        await auth.authenticate_key(RAW, "127.0.0.1")
    keys.down = False
    assert (await auth.authenticate_key(RAW, "127.0.0.1")).end_user_id == "eu_1"
    await auth.close()


async def test_close_leaves_no_refresh_running() -> None:
    keys, clock = Keys(), Clock()
    auth = Authenticator(keys, _no_operator, 0, clock=clock)
    await auth.authenticate_key(RAW, "127.0.0.1")  # kept fresh from here: a keep timer is armed
    clock.now += REFRESH_AFTER_S + 0.01
    await auth.authenticate_key(RAW, "127.0.0.1")  # and a refresh is gathering
    await auth.close()
    queries = keys.queries
    await asyncio.sleep(0.7)
    assert keys.queries == queries
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_lookup_begun_before_invalidate_answers_its_request_and_is_not_kept() -> None:
    """This instance revokes a key (``invalidate``) while a request's lookup of it is on its way: that request gets
    what the lookup found, but the key's next request looks it up again instead of using the stale answer."""
    keys, clock = Keys(), Clock()
    auth = Authenticator(keys, _no_operator, 0, clock=clock, keep_fresh_s=0)
    gate = asyncio.Event()
    find_many = keys.find_active_many

    async def slow(digests: list[bytes]) -> dict[bytes, KeyRecord]:
        await gate.wait()
        return await find_many(digests)

    keys.find_active_many = slow  # type: ignore[method-assign]
    first = asyncio.create_task(auth.authenticate_key(RAW, "127.0.0.1"))
    await asyncio.sleep(0.01)
    auth.invalidate()  # the revocation commits meanwhile
    gate.set()
    assert (await first).end_user_id == "eu_1"

    async def revoked(digests: list[bytes]) -> dict[bytes, KeyRecord]:
        keys.queries += 1
        return {}

    keys.find_active_many = revoked  # type: ignore[method-assign]
    with pytest.raises(AuthenticationError):
        await auth.authenticate_key(RAW, "127.0.0.1")
    await auth.close()
