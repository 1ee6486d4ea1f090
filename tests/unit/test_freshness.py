"""Refresh-ahead caches (services/freshness.py): served at most ``max_age_s``; past ``refresh_after_s`` one
background reload, while the current value is still served; ``invalidate`` wins over a reload in flight."""

from __future__ import annotations

import asyncio

import pytest

from tollway.services.freshness import RefreshAhead


class Source:
    def __init__(self) -> None:
        self.value = "v1"
        self.loads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def load(self, key: str) -> str:
        self.loads += 1
        value = self.value  # what the database said when the read began
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("database down")
        return f"{key}:{value}"


async def test_serves_while_reloading_ahead_and_never_past_max_age() -> None:
    now = [0.0]
    source = Source()
    cache: RefreshAhead[str, str] = RefreshAhead(source.load, max_age_s=0.9, refresh_after_s=0.5, clock=lambda: now[0])
    assert await cache.get("k") == "k:v1" and source.loads == 1
    now[0] = 0.4
    assert await cache.get("k") == "k:v1" and source.loads == 1  # fresh: no reload
    source.gate = asyncio.Event()
    now[0] = 0.6
    source.value = "v2"
    assert await cache.get("k") == "k:v1"  # stale-but-valid: served at once, one reload started
    assert await cache.get("k") == "k:v1"
    await asyncio.sleep(0)
    assert source.loads == 2  # single flight
    source.gate.set()
    await asyncio.sleep(0.01)
    assert await cache.get("k") == "k:v2"  # the reload landed, dated from when it began (0.6)
    now[0] = 1.6
    source.value = "v3"
    assert await cache.get("k") == "k:v3"  # older than max_age: loaded in the foreground


async def test_a_failed_reload_keeps_the_value_only_until_max_age() -> None:
    now = [0.0]
    source = Source()
    cache: RefreshAhead[str, str] = RefreshAhead(source.load, max_age_s=0.9, refresh_after_s=0.5, clock=lambda: now[0])
    await cache.get("k")
    source.fail = True
    now[0] = 0.6
    assert await cache.get("k") == "k:v1"
    await asyncio.sleep(0.01)
    now[0] = 0.95
    with pytest.raises(RuntimeError):
        await cache.get("k")


async def test_invalidate_wins_over_a_reload_in_flight() -> None:
    now = [0.0]
    source = Source()
    cache: RefreshAhead[str, str] = RefreshAhead(source.load, max_age_s=0.9, refresh_after_s=0.5, clock=lambda: now[0])
    await cache.get("k")
    source.gate = asyncio.Event()
    now[0] = 0.6
    await cache.get("k")  # starts a reload ...
    await asyncio.sleep(0)  # ... which reads "v1" and waits
    cache.invalidate()
    source.value = "v2"
    source.gate.set()
    await asyncio.sleep(0.01)
    now[0] = 0.6
    await asyncio.sleep(0.01)
    assert await cache.get("k") == "k:v2"  # the stale reload did not write back
