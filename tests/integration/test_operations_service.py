"""The operations service (SPEC §9.6, §13.4) over the real SQL stores: readiness, the store gauges and reconcile,
including a database that is down and one whose migrations were never applied."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import STORES, database_url_for, make_settings
from tests.support.servers import free_port
from tollway.domain.clock import utcnow
from tollway.domain.ids import new_id
from tollway.errors import ServiceUnavailable
from tollway.observability.metrics import Metrics
from tollway.services.operations import Operations
from tollway.services.ratelimit import LimitCache, RateLimiter
from tollway.settings import Settings
from tollway.storage.ratelimit.memory import InProcessRateLimitBackend
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.health import DatabaseHealth
from tollway.storage.sql.migrate import upgrade
from tollway.storage.sql.rate_overrides import RateOverrideStore
from tollway.storage.sql.reconcile import MoneyAuditStore
from tollway.storage.sql.tables import platforms, wallets


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return make_settings(tmp_path, database_url_for(store, tmp_path, request))


@contextlib.asynccontextmanager
async def _operations(settings: Settings, metrics: Metrics) -> AsyncIterator[Operations]:
    """Wired as ``app.py`` wires it, with the in-process rate-limit backend (no Redis)."""
    engine = create_engine(settings)
    limiter = RateLimiter(InProcessRateLimitBackend(), LimitCache(RateOverrideStore(engine)), metrics)
    try:
        yield Operations(DatabaseHealth(engine, settings), limiter, MoneyAuditStore(engine), metrics)
    finally:
        await limiter.close()
        await engine.dispose()


def _unreachable(store: str, tmp_path: Path) -> Settings:
    if store == "sqlite":
        return make_settings(tmp_path, f"sqlite:///{tmp_path / 'no-such-dir' / 'tollway.db'}")
    return make_settings(tmp_path, f"postgresql://tollway@127.0.0.1:{free_port()}/tollway")


async def test_a_migrated_store_is_ready(settings: Settings) -> None:
    await upgrade(settings)
    async with _operations(settings, Metrics()) as operations:
        assert await operations.readiness() == {"database": "ok", "redis": "disabled"}


async def test_pending_migrations_are_not_ready(settings: Settings) -> None:
    async with _operations(settings, Metrics()) as operations:
        with pytest.raises(ServiceUnavailable, match="migrations are pending"):
            await operations.readiness()


async def test_an_unreachable_database_is_not_ready_and_drops_the_store_gauges(store: str, tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.store.holds_active, metrics.store.uncollected_nanos = 1, 2
    async with _operations(_unreachable(store, tmp_path), metrics) as operations:
        with pytest.raises(ServiceUnavailable, match="unreachable"):
            await operations.readiness()
        await operations.refresh_store_gauges()
    assert (metrics.store.holds_active, metrics.store.uncollected_nanos) == (None, None)


async def test_store_gauges_and_reconcile_read_the_store(settings: Settings) -> None:
    await upgrade(settings)
    metrics = Metrics()
    async with _operations(settings, metrics) as operations:
        await operations.refresh_store_gauges()
        assert (metrics.store.holds_active, metrics.store.uncollected_nanos) == (0, 0)
        clean = await operations.reconcile()
        assert clean.ok and (clean.wallets, clean.budgets) == (0, 0)

        # A wallet whose balance no ledger row explains: invariant 1 is broken.
        engine = create_engine(settings)
        try:
            now, platform_id, wallet_id = utcnow(), new_id(), new_id()
            async with engine.begin() as conn:
                await conn.execute(
                    platforms.insert().values(
                        id=platform_id, name="p", slug=f"p-{platform_id}", settings={}, created_at=now, updated_at=now
                    )
                )
                await conn.execute(
                    wallets.insert().values(
                        id=wallet_id,
                        platform_id=platform_id,
                        balance_nanos=5,
                        held_nanos=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
        finally:
            await engine.dispose()
        report = await operations.reconcile()
    assert not report.ok and report.wallets == 1
    assert [(d.kind, d.id, d.expected_nanos, d.actual_nanos) for d in report.differences] == [
        ("wallet_balance", wallet_id, 0, 5)
    ]
    assert orjson.loads(orjson.dumps(report.body()))["differences"] == [
        {"kind": "wallet_balance", "id": wallet_id, "expected_usd": 0, "actual_usd": 0.000000005}
    ]
