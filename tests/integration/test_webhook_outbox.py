"""The webhook outbox and dispatcher against real databases (SPEC §11.4, §13.3): the retry schedule under a
controllable clock, at-least-once delivery across a crash, and one attempt per due delivery across dispatchers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import STORES, database_url_for, make_settings
from tests.support.servers import running_gateway
from tests.support.webhook_receiver import WebhookReceiver
from tollway.domain.clock import as_utc, utcnow
from tollway.domain.sealing import Sealer
from tollway.services.management.budgets import Budgets, Movement
from tollway.settings import Settings, decode_secret_key
from tollway.storage.sql.budgets import BudgetStore
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.tables import webhook_deliveries, webhook_events
from tollway.storage.sql.unit_of_work import SqlUnitOfWork
from tollway.storage.sql.webhooks import WebhookStore
from tollway.workers.webhooks import WebhookDispatcher, webhook_session

DELAYS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


@dataclass
class Seeded:
    settings: Settings
    platform_id: str
    end_user_id: str
    endpoint_id: str
    secret: str


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver().start()
    yield hook
    hook.stop()


@pytest.fixture(params=STORES)
def seeded(request: pytest.FixtureRequest, tmp_path: Path, receiver: WebhookReceiver) -> Seeded:
    """A platform, an end user with a budget and an endpoint, created through a gateway that is then stopped."""
    settings = make_settings(tmp_path, database_url_for(request.param, tmp_path, request))
    with running_gateway(settings) as gateway:
        admin = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {settings.admin_key}"})
        created = admin.post("/v1/admin/platforms", json={"name": "Outbox"}).json()
        platform_id = created["platform"]["id"]
        client = httpx.Client(
            base_url=gateway.url, headers={"Authorization": f"Bearer {created['api_key']['raw_key']}"}
        )
        user = client.post(f"/v1/platforms/{platform_id}/end-users", json={"external_id": "u1"}).json()
        budget = client.post(f"/v1/platforms/{platform_id}/end-users/{user['id']}/budget", json={"max_usd": 1})
        assert budget.status_code == 201
        endpoint = client.post(f"/v1/platforms/{platform_id}/webhooks", json={"url": receiver.url}).json()
        admin.close()
        client.close()
    return Seeded(settings, platform_id, user["id"], endpoint["id"], endpoint["secret"])


@pytest.fixture
async def engine(seeded: Seeded) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(seeded.settings)
    yield engine
    await engine.dispose()


async def _commit_topups(engine: AsyncEngine, seeded: Seeded, count: int = 1) -> None:
    """Ledger commits whose process then 'dies' before any dispatcher runs."""
    budgets = Budgets(BudgetStore(engine), lambda: SqlUnitOfWork(engine))
    for _ in range(count):
        async with SqlUnitOfWork(engine) as uow:
            topup = budgets.topup(seeded.platform_id, seeded.end_user_id, Movement(1_000_000_000, None), utcnow())
            change = await topup(uow)
            assert change is not None
            await uow.commit()


def _dispatcher(engine: AsyncEngine, seeded: Seeded, clock: Clock, session: aiohttp.ClientSession) -> WebhookDispatcher:
    sealer = Sealer(decode_secret_key(seeded.settings.secret_key or ""))
    return WebhookDispatcher(
        WebhookStore(engine),
        sealer,
        session,
        DELAYS,
        clock=clock,
        jitter=lambda: 0.0,
    )


async def _delivery(engine: AsyncEngine) -> sa.Row[tuple[object, ...]]:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(webhook_deliveries))).one()


async def test_retry_schedule_then_failed_after_the_eighth_attempt(
    seeded: Seeded, engine: AsyncEngine, receiver: WebhookReceiver
) -> None:
    receiver.statuses = [500, 503, 302, 404, 500, 500, 500, 500]  # 3xx is a failure too: never followed
    await _commit_topups(engine, seeded)
    start = utcnow() + timedelta(seconds=1)
    clock = Clock(start)
    async with webhook_session(allow_private=True) as session:
        dispatcher = _dispatcher(engine, seeded, clock, session)
        expected = [start]
        for delay in DELAYS:
            expected.append(expected[-1] + timedelta(seconds=delay))
        for number, due in enumerate(expected, start=1):
            if number > 1:  # the first attempt is due at the commit
                clock.now = due - timedelta(microseconds=1)
                assert await dispatcher.run_once() == 0, f"attempt {number} ran early"
            clock.now = due
            assert await dispatcher.run_once() == 1
            row = await _delivery(engine)
            assert len(row.attempts) == number
            if number < 8:
                assert row.status == "pending"
                assert as_utc(row.next_attempt_at) == expected[number]
        clock.now = expected[-1] + timedelta(days=30)
        assert await dispatcher.run_once() == 0
    row = await _delivery(engine)
    assert row.status == "failed" and row.next_attempt_at is None
    assert [a["attempted_at"] for a in row.attempts] == [
        due.isoformat(timespec="microseconds").replace("+00:00", "Z").replace(".000000Z", "Z") for due in expected
    ]
    assert [a["response_status"] for a in row.attempts] == [500, 503, 302, 404, 500, 500, 500, 500]
    assert [a["attempt"] for a in row.attempts] == list(range(1, 9))
    assert len(receiver.received) == 8
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1


async def test_a_crash_after_the_commit_still_delivers_with_the_same_webhook_id(
    seeded: Seeded, engine: AsyncEngine, receiver: WebhookReceiver
) -> None:
    await _commit_topups(engine, seeded)
    start = utcnow() + timedelta(seconds=1)
    clock = Clock(start)
    receiver.hold_s = 5.0
    async with webhook_session(allow_private=True) as session:
        crashing = asyncio.create_task(_dispatcher(engine, seeded, clock, session).run_once())
        await asyncio.to_thread(receiver.wait_for, lambda r: len(r) >= 1)
        crashing.cancel()  # the instance dies mid-attempt: nothing recorded, the claim's lease remains
        with pytest.raises(asyncio.CancelledError):
            await crashing
    row = await _delivery(engine)
    assert row.status == "pending" and row.attempts == []
    receiver.hold_s = 0.0
    async with webhook_session(allow_private=True) as session:
        survivor = _dispatcher(engine, seeded, clock, session)
        clock.now = start + timedelta(seconds=30)
        assert await survivor.run_once() == 0  # still leased to the dead instance
        clock.now = start + timedelta(seconds=61)
        assert await survivor.run_once() == 1
    row = await _delivery(engine)
    assert row.status == "succeeded" and len(row.attempts) == 1
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == row.webhook_id
    assert first.body == second.body


def test_events_committed_while_no_instance_runs_are_delivered_by_the_next_one(
    seeded: Seeded, receiver: WebhookReceiver
) -> None:
    async def commit() -> None:
        engine = create_engine(seeded.settings)
        try:
            await _commit_topups(engine, seeded, 2)
        finally:
            await engine.dispose()

    asyncio.run(commit())
    with running_gateway(seeded.settings.model_copy(update={"port": seeded.settings.port + 0})):
        received = receiver.wait_for(lambda r: len(r) >= 2, timeout=5)
    assert sorted(r.json()["event_type"] for r in received) == ["budget.topped_up"] * 2
    assert len({r.headers["webhook-id"] for r in received}) == 2


async def test_concurrent_dispatchers_attempt_each_delivery_once(
    seeded: Seeded, engine: AsyncEngine, receiver: WebhookReceiver
) -> None:
    await _commit_topups(engine, seeded, 6)
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(webhook_events))).scalar_one() == 6
    clock = Clock(utcnow() + timedelta(seconds=1))
    receiver.hold_s = 0.2
    async with webhook_session(allow_private=True) as one, webhook_session(allow_private=True) as two:
        first, second = _dispatcher(engine, seeded, clock, one), _dispatcher(engine, seeded, clock, two)
        done = await asyncio.gather(first.run_once(), second.run_once(), first.run_once(), second.run_once())
    assert sum(done) == 6
    assert len(receiver.received) == 6
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 6
