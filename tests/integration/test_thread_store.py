"""The thread store on real SQLite and PostgreSQL (SPEC §16.4): exactly one of concurrent claims wins (on PostgreSQL
through two engines, as two instances would), an expired lease is taken over and its old holder cannot free it, a
claim held by a running request is renewed past its lease until released (and renews nothing after), a thread never
used is gone at release, and retention prunes threads whose responses all expired."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import STORES, database_url_for, make_settings
from tollway.domain.clock import utcnow
from tollway.domain.ids import new_id
from tollway.domain.stored_responses import Owner
from tollway.domain.threads import Deletion, ThreadLease
from tollway.errors import ThreadBusy
from tollway.services.agents.threads import Threads
from tollway.settings import Settings
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.migrate import upgrade
from tollway.storage.sql.responses import prune_responses
from tollway.storage.sql.tables import platforms, stored_responses, threads
from tollway.storage.sql.threads import ThreadStore, prune_threads


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    config = make_settings(tmp_path, database_url_for(request.param, tmp_path, request))
    asyncio.run(upgrade(config))
    return config


async def _platform(store_settings: Settings) -> Owner:
    engine = create_engine(store_settings)
    now = utcnow()
    platform_id = new_id()
    row = {"id": platform_id, "name": "P", "slug": platform_id, "settings": {}, "created_at": now, "updated_at": now}
    async with engine.begin() as conn:
        await conn.execute(sa.insert(platforms).values(row))
    await engine.dispose()
    return Owner(platform_id, None)


def _body(response_id: str) -> dict[str, Any]:
    return {"id": response_id, "output": [{"type": "message", "role": "assistant", "content": []}]}


def test_exactly_one_of_concurrent_claims_wins(settings: Settings) -> None:
    async def run() -> None:
        owner = await _platform(settings)
        instances = 2 if settings.database_url.startswith("postgres") else 1
        engines = [create_engine(settings) for _ in range(instances)]
        stores = [ThreadStore(engine, 30) for engine in engines]
        lease_until = utcnow() + timedelta(minutes=5)
        try:
            for round_ in range(3):  # a new thread (INSERT race), then an existing free one (UPDATE race), twice
                claims = await asyncio.gather(
                    *(
                        stores[i % instances].claim(owner, "race", f"req-{round_}-{i}", {}, lease_until)
                        for i in range(8)
                    )
                )
                won = [claim for claim in claims if claim is not None]
                assert len(won) == 1, claims
                await stores[0].append(won[0], owner, [], _body(f"resp_{round_}"))
                await stores[0].release(won[0])
            assert [t.input_items for t in await stores[0].turns(won[0].key)] == [[], [], []]
            thread = await stores[0].get(owner, "race")
            assert thread is not None and thread.response_count == 3
        finally:
            for engine in engines:
                await engine.dispose()

    asyncio.run(run())


def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_free_it(settings: Settings) -> None:
    async def run() -> None:
        owner = await _platform(settings)
        engine = create_engine(settings)
        store = ThreadStore(engine, 30)
        try:
            crashed = await store.claim(owner, "t", "req-crashed", {}, utcnow() + timedelta(milliseconds=300))
            assert crashed is not None
            await store.append(crashed, owner, [], _body("resp_a"))  # it had a turn: not removed at release
            assert await store.claim(owner, "t", "req-early", {}, utcnow() + timedelta(minutes=5)) is None
            assert await store.delete(owner, "t") is Deletion.BUSY
            await asyncio.sleep(0.4)
            taker = await store.claim(owner, "t", "req-taker", {}, utcnow() + timedelta(minutes=5))
            assert taker is not None and taker.key == crashed.key
            await store.release(crashed)  # the old holder's late release leaves the new lease alone
            assert await store.claim(owner, "t", "req-third", {}, utcnow() + timedelta(minutes=5)) is None
            await store.release(taker)
            assert await store.delete(owner, "t") is Deletion.DELETED
            assert await store.delete(owner, "t") is Deletion.MISSING
            async with engine.connect() as conn:
                left = await conn.execute(sa.select(sa.func.count()).select_from(stored_responses))
                assert left.scalar_one() == 0
        finally:
            await engine.dispose()

    asyncio.run(run())


LEASE_S = 1.5  # renewed every 0.5 s


def test_a_claim_is_renewed_while_held_and_no_longer_once_released(settings: Settings) -> None:
    async def run() -> None:
        owner = await _platform(settings)
        engine = create_engine(settings)
        store = ThreadStore(engine, 30)
        service = Threads(store, LEASE_S)
        try:
            long = await service.claim(owner, "long", "req-long", {})
            soon = await service.claim(owner, "soon", "req-soon", {})
            assert service.held == 2
            await asyncio.sleep(LEASE_S * 2.5)  # two and a half leases: each expired by now without its renewals
            for name in ("long", "soon"):
                with pytest.raises(ThreadBusy):
                    await service.claim(owner, name, f"req-other-{name}", {})
            stale = ThreadLease(long.key, "long", "req-nobody")
            assert await store.renew(stale, utcnow() + timedelta(minutes=5)) is False  # only its holder renews it
            await service.release(long)
            service.release_soon(soon)  # as a stream's ``finally`` does
            assert service.held == 0
            await asyncio.sleep(0.2)
            for name in ("long", "soon"):  # free at once, not when a lease lapses
                taken = await store.claim(owner, name, f"req-next-{name}", {}, utcnow() + timedelta(minutes=5))
                assert taken is not None
            # No renewal outlives its claim: every task the service started has ended.
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            assert others == []
        finally:
            service.close()
            await engine.dispose()

    asyncio.run(run())


def test_a_thread_never_used_is_gone_at_release(settings: Settings) -> None:
    async def run() -> None:
        owner = await _platform(settings)
        engine = create_engine(settings)
        store = ThreadStore(engine, 30)
        try:
            lease = await store.claim(owner, "unused", "req-1", {"k": "v"}, utcnow() + timedelta(minutes=5))
            assert lease is not None
            thread = await store.get(owner, "unused")
            assert thread is not None and (thread.response_count, thread.metadata) == (0, {"k": "v"})
            await store.release(lease)
            assert await store.get(owner, "unused") is None
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_retention_prunes_threads_whose_responses_all_expired(settings: Settings) -> None:
    async def run() -> None:
        owner = await _platform(settings)
        engine = create_engine(settings)
        store = ThreadStore(engine, 30)
        try:
            for name in ("old", "recent", "held"):
                lease = await store.claim(owner, name, f"req-{name}", {}, utcnow() + timedelta(minutes=5))
                assert lease is not None
                await store.append(lease, owner, [], _body(f"resp_{name}"))
                if name != "held":
                    await store.release(lease)
            past = utcnow() - timedelta(days=31)
            async with engine.begin() as conn:  # "old" and "held" were last used 31 days ago
                aged = threads.c.thread_id.in_(["old", "held"])
                keys = [r.id for r in (await conn.execute(sa.select(threads.c.id).where(aged))).all()]
                await conn.execute(sa.update(threads).where(aged).values(updated_at=past))
                expired = stored_responses.c.thread_key.in_(keys)
                await conn.execute(sa.update(stored_responses).where(expired).values(expires_at=past))
            old = await store.get(owner, "old")
            assert old is not None and old.response_count == 0  # expired responses no longer count
            assert await prune_threads(engine, utcnow(), 30) == 1  # "held" is still held
            assert await store.get(owner, "old") is None
            assert [
                t.id for t in (await store.list(owner.platform_id, None, every_owner=False, offset=0, limit=10))[0]
            ] == [
                "held",
                "recent",
            ]
            assert await prune_responses(engine, utcnow()) == 1  # the held thread's expired response
            recent = await store.get(owner, "recent")
            assert recent is not None and recent.response_count == 1
        finally:
            await engine.dispose()

    asyncio.run(run())
