"""The free tier's count of MCP calls (SPEC §16.1), on SQLite and PostgreSQL: many concurrent takers on two engines
(two instances' connections to one database) never take more slots than the month's limit, a slot given back is
taken again once, and each UTC month counts on its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.servers import GatewayServer
from tollway.services.agents.mcp_free_tier import FreeTierGate
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.mcp_free_calls import McpFreeCallStore

TAKERS = 12  # per engine


@pytest.fixture
async def stores(gateway: GatewayServer) -> AsyncIterator[tuple[McpFreeCallStore, McpFreeCallStore]]:
    first, second = create_engine(gateway.settings), create_engine(gateway.settings)
    try:
        yield McpFreeCallStore(first), McpFreeCallStore(second)
    finally:
        await first.dispose()
        await second.dispose()


def _platform(admin: httpx.Client) -> str:
    created = admin.post("/v1/admin/platforms", json={"name": f"Free {uuid.uuid4().hex[:6]}"})
    assert created.status_code == 201, created.text
    return str(created.json()["platform"]["id"])


async def test_concurrent_takers_on_two_engines_never_pass_the_limit(
    admin: httpx.Client, stores: tuple[McpFreeCallStore, McpFreeCallStore]
) -> None:
    platform_id = _platform(admin)
    first, second = stores
    takers = [store.take(platform_id, "2026-12", 7) for store in (first, second) for _ in range(TAKERS)]
    taken = await asyncio.gather(*takers)
    assert taken.count(True) == 7
    assert await first.used(platform_id, "2026-12") == 7
    await second.give_back(platform_id, "2026-12")
    again = await asyncio.gather(*(first.take(platform_id, "2026-12", 7) for _ in range(3)))
    assert again.count(True) == 1
    assert await second.used(platform_id, "2026-12") == 7


async def test_each_month_counts_on_its_own_and_a_zero_tier_gives_nothing(
    admin: httpx.Client, stores: tuple[McpFreeCallStore, McpFreeCallStore]
) -> None:
    platform_id = _platform(admin)
    first, _ = stores
    assert await first.take(platform_id, "2026-11", 1) is True
    assert await first.take(platform_id, "2026-11", 1) is False
    assert await first.take(platform_id, "2026-12", 1) is True
    assert await first.take(platform_id, "2027-01", 0) is False
    await first.give_back(platform_id, "2027-01")  # nothing taken: the count never goes below 0
    assert await first.used(platform_id, "2027-01") == 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_exhausted_month_is_remembered_until_a_slot_comes_back_here_or_the_memory_expires(
    admin: httpx.Client, stores: tuple[McpFreeCallStore, McpFreeCallStore]
) -> None:
    """The instance's gate (``FreeTierGate``) skips the store once the month is used up: a slot given back on another
    instance stays unseen here until ``ttl_s`` passes, one given back here is seen at once, a changed limit or a new
    month asks the store at once, and the store's count never passes the limit."""
    platform_id = _platform(admin)
    first, second = stores
    clock = Clock()
    here = FreeTierGate(first, ttl_s=10, clock=clock)
    there = FreeTierGate(second, ttl_s=10, clock=clock)
    assert [await here.take(platform_id, "2026-12", 2) for _ in range(3)] == [True, True, False]
    await there.give_back(platform_id, "2026-12")  # another instance's call ended unbilled
    assert await first.used(platform_id, "2026-12") == 1
    assert await here.take(platform_id, "2026-12", 2) is False  # remembered: the store is not asked
    assert await there.take(platform_id, "2026-12", 2) is True  # the instance that gave it back takes it
    assert await there.take(platform_id, "2026-12", 2) is False
    await there.give_back(platform_id, "2026-12")
    clock.now += 10.5  # the memory expires: the slot given back over there is found
    assert await here.take(platform_id, "2026-12", 2) is True
    assert await here.take(platform_id, "2026-12", 2) is False
    await here.give_back(platform_id, "2026-12")  # given back here: forgotten at once
    assert await here.take(platform_id, "2026-12", 2) is True
    assert await here.take(platform_id, "2026-12", 3) is True  # a raised limit is asked at once
    assert await here.take(platform_id, "2027-01", 3) is True  # so is a new month
    assert await first.used(platform_id, "2026-12") == 3 and await first.used(platform_id, "2027-01") == 1
