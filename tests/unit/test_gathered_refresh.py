"""The gathered refresh (services/gathered_refresh.py) on a real event loop, with a clock the tests move and a fake
loader: keys due within the gathering window share one load; keys in use are reloaded again with no request, keys
unused for longer than the keep window are dropped; ``invalidate`` wins over a load in flight; a failed load is
logged, reported to whoever waits for it, and retried by the next read."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import pytest

from tollway.services.gathered_refresh import GatheredRefresh

KEEP_FRESH_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Cache:
    """The smallest owner: entries by key (None from the database: the key is gone), a loader that records every
    call and reads the database when it begins."""

    def __init__(self, clock: Clock, *, gather_s: float = 0.02, refresh_after_s: float = 0.1) -> None:
        self.database: dict[str, str] = {}
        self.entries: dict[str, tuple[float, str]] = {}
        self.calls: list[dict[str, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False
        self.outage_on_cancel = False  # as the SQL stores report a statement cancelled mid-flight
        self.refresh: GatheredRefresh[str, str, str | None] = GatheredRefresh(
            self.load,
            self.store,
            lambda key: key in self.entries,
            refresh_after_s=refresh_after_s,
            gather_s=gather_s,
            keep_fresh_s=KEEP_FRESH_S,
            log=logging.getLogger("tests.gathered_refresh"),
            what="test reload",
            clock=clock,
        )

    async def load(self, due: Mapping[str, str], started: float) -> dict[str, str | None]:
        self.calls.append(dict(due))
        read = {key: self.database.get(key) for key in due}
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            if self.outage_on_cancel:
                raise RuntimeError("database unreachable") from None
            raise
        if self.fail:
            raise RuntimeError("database down")
        return read

    def store(self, key: str, value: str | None, started: float) -> bool:
        if value is None:
            self.entries.pop(key, None)
            return False
        self.entries[key] = (started, value)
        return True


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_keys_due_within_the_window_share_one_load() -> None:
    clock = Clock()
    cache = Cache(clock)
    cache.database = {"a": "a1", "b": "b1", "c": "c1"}
    cache.refresh.queue("a", "p1")
    cache.refresh.queue("b", "p2")
    cache.refresh.queue("a", "p1")  # already due: not twice
    cache.refresh.queue("c", "p3")
    assert cache.calls == []  # gathering
    await until(lambda: len(cache.entries) == 3)
    await asyncio.sleep(0.3)
    assert cache.calls == [{"a": "p1", "b": "p2", "c": "p3"}]  # one load with all of them, and no more (unused)
    assert cache.entries == {"a": (100.0, "a1"), "b": (100.0, "b1"), "c": (100.0, "c1")}


async def test_a_key_in_flight_is_not_queued_again() -> None:
    clock = Clock()
    cache = Cache(clock)
    cache.database = {"a": "a1"}
    cache.gate.clear()
    cache.refresh.queue("a", "p")
    assert "a" in cache.refresh.pending
    await until(lambda: len(cache.calls) == 1)
    assert "a" in cache.refresh.pending
    cache.refresh.queue("a", "p")  # a read while it is being reloaded
    await asyncio.sleep(0.2)
    cache.gate.set()
    await until(lambda: "a" in cache.entries)
    assert "a" not in cache.refresh.pending
    await asyncio.sleep(0.2)
    assert cache.calls == [{"a": "p"}]


async def test_sweep_forgets_only_reads_older_than_the_keep_window() -> None:
    cache = Cache(Clock())
    cache.refresh.used.update({"old": 100.0, "recent": 105.0})
    used = cache.refresh.used
    cache.refresh.sweep(100.0 + KEEP_FRESH_S + 1)
    assert cache.refresh.used == {"recent": 105.0} and cache.refresh.used is used  # the owner's alias stays valid


async def test_a_key_in_use_is_reloaded_again_without_a_request() -> None:
    clock = Clock()
    cache = Cache(clock)
    cache.database = {"a": "a1"}
    cache.entries["a"] = (clock.now, "a0")  # loaded in the foreground ...
    cache.refresh.used["a"] = clock.now
    cache.refresh.keep("a", "p")  # ... and kept fresh from there
    await until(lambda: cache.entries["a"][1] == "a1")
    cache.database["a"] = "a2"
    clock.now += 1.0  # still within the keep window of the read
    await until(lambda: cache.entries["a"][1] == "a2")  # no request in between
    assert cache.calls[:2] == [{"a": "p"}, {"a": "p"}]
    assert cache.entries["a"][0] == 101.0  # dated from when the load began


async def test_a_key_unused_for_longer_than_the_keep_window_is_dropped() -> None:
    clock = Clock()
    cache = Cache(clock)
    cache.database = {"a": "a1", "b": "b1"}
    for key in ("a", "b"):
        cache.entries[key] = (clock.now, "old")
        cache.refresh.used[key] = clock.now
        cache.refresh.keep(key, "p")
    cache.gate.clear()
    await until(lambda: len(cache.calls) == 1)  # began within the window: both kept
    clock.now += KEEP_FRESH_S + 1
    cache.refresh.used["b"] = clock.now  # "b" is read again, "a" is not
    cache.gate.set()
    await until(lambda: len(cache.calls) == 3)  # "a"'s last reload, then "b" alone
    assert cache.calls[:3] == [{"a": "p", "b": "p"}, {"a": "p", "b": "p"}, {"b": "p"}]
    assert all("a" not in call for call in cache.calls[2:])


async def test_a_key_gone_from_the_database_is_not_kept() -> None:
    clock = Clock()
    cache = Cache(clock)
    cache.entries["a"] = (clock.now, "a0")  # the database no longer has it (a revoked key)
    cache.refresh.used["a"] = clock.now
    cache.refresh.keep("a", "p")
    await until(lambda: "a" not in cache.entries)
    await asyncio.sleep(0.3)
    assert cache.calls == [{"a": "p"}]


async def test_invalidate_during_a_load_discards_its_result() -> None:
    clock = Clock()
    cache = Cache(clock)
    cache.database = {"a": "a1"}
    cache.entries["a"] = (clock.now, "a0")
    cache.gate.clear()
    cache.refresh.queue("a", "p")
    await until(lambda: len(cache.calls) == 1)  # it read "a1" and waits
    waiting = cache.refresh.waiter("a")
    assert waiting is not None
    cache.refresh.invalidate("a")
    cache.database["a"] = "a2"
    assert cache.refresh.waiter("a") is None  # a request from now on does not share the stale load
    cache.gate.set()
    assert await waiting == "a1"  # one already waiting gets what it waited for
    await asyncio.sleep(0.05)
    assert cache.entries["a"] == (100.0, "a0")  # not written back
    cache.refresh.queue("a", "p")  # the next read past the refresh point
    await until(lambda: cache.entries["a"][1] == "a2")
    assert len(cache.calls) == 2


async def test_a_waiting_request_starts_a_gathering_load_at_once() -> None:
    clock = Clock()
    cache = Cache(clock, gather_s=60.0)
    cache.database = {"a": "a1", "b": "b1"}
    cache.refresh.queue("a", "p")
    cache.refresh.queue("b", "p")
    waiting = cache.refresh.waiter("a")
    assert waiting is not None
    assert await asyncio.wait_for(waiting, 20) == "a1"  # not held back by the 60 s window
    assert cache.calls == [{"a": "p", "b": "p"}]  # the others due ride along
    assert cache.refresh.waiter("c") is None  # nothing due or running: the caller loads it itself


async def test_a_failed_load_is_logged_reported_to_its_waiters_and_retried_by_the_next_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    cache = Cache(clock)
    cache.database = {"a": "a1"}
    cache.entries["a"] = (clock.now, "a0")
    cache.refresh.used["a"] = clock.now
    cache.fail = True
    cache.refresh.queue("a", "p")
    waiting = cache.refresh.waiter("a")
    assert waiting is not None
    with pytest.raises(RuntimeError, match="database down"):
        await waiting
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == ["background test reload failed"]
    await asyncio.sleep(0.3)
    assert len(cache.calls) == 1  # a failure is not kept: only a read tries again
    assert cache.entries["a"] == (100.0, "a0")  # served until its owner's expiry
    cache.fail = False
    cache.refresh.queue("a", "p")
    await until(lambda: cache.entries["a"][1] == "a1")
    assert len(cache.calls) == 2


async def test_close_leaves_nothing_running() -> None:
    clock = Clock()
    cache = Cache(clock)
    cache.database = {"a": "a1"}
    cache.entries["b"] = (clock.now, "b0")
    cache.refresh.used["b"] = clock.now
    cache.refresh.keep("b", "p")  # a keep timer
    cache.gate.clear()
    cache.refresh.queue("a", "p")
    waiting = cache.refresh.waiter("a")  # a load in flight
    assert waiting is not None
    await until(lambda: len(cache.calls) == 1)
    await cache.refresh.close()
    assert waiting.cancelled()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    cache.refresh.queue("c", "p")
    cache.refresh.keep("c", "p")
    await asyncio.sleep(0.3)
    assert cache.calls == [{"a": "p"}]


async def test_a_load_that_begins_after_invalidate_writes_back() -> None:
    clock = Clock()
    cache = Cache(clock, gather_s=60.0)
    cache.database = {"a": "a1"}
    cache.refresh.queue("a", "p")  # still gathering: it has read nothing yet
    cache.refresh.invalidate()
    cache.database["a"] = "a2"
    waiting = cache.refresh.waiter("a")
    assert waiting is not None
    assert await asyncio.wait_for(waiting, 20) == "a2"
    assert cache.entries["a"] == (100.0, "a2")
    assert cache.calls == [{"a": "p"}]


async def test_a_load_that_reports_its_cancellation_as_a_failure_is_not_logged_at_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SQL stores map a statement cancelled mid-flight to an outage error: at shutdown that is no failure."""
    cache = Cache(Clock())
    cache.gate.clear()
    cache.outage_on_cancel = True
    cache.refresh.queue("a", "p")
    await until(lambda: len(cache.calls) == 1)
    await cache.refresh.close()
    assert [r.getMessage() for r in caplog.records] == []
