"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import STORES, database_url_for, make_settings
from tests.support.processes import GatewayProcess
from tests.support.redis_server import start_redis_or_skip
from tests.support.servers import free_port


@pytest.fixture(params=STORES)
def instances(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    """Real ``tollway serve`` processes on one database: one on SQLite, two sharing PostgreSQL and Redis (a second
    instance without Redis is refused at start, SPEC §13.2)."""
    url = database_url_for(request.param, tmp_path, request)
    count = 2 if request.param == "postgres" else 1
    redis = start_redis_or_skip() if count > 1 else None
    base = make_settings(tmp_path, url, redis_url=redis.url if redis else None)
    started: list[GatewayProcess] = []
    try:
        for _ in range(count):
            started.append(GatewayProcess(base.model_copy(update={"port": free_port()})))
        yield started
    finally:
        for proc in started:
            proc.stop()
        if redis is not None:
            redis.stop()
