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
