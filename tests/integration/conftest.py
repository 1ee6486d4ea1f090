"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import STORES, database_url_for, make_settings
from tests.support.processes import GatewayProcess
from tests.support.servers import free_port


@pytest.fixture(params=STORES)
def instances(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    """Real ``tollway serve`` processes on one database: one on SQLite, two sharing PostgreSQL."""
    url = database_url_for(request.param, tmp_path, request)
    base = make_settings(tmp_path, url)
    count = 2 if request.param == "postgres" else 1
    started: list[GatewayProcess] = []
    try:
        for _ in range(count):
            started.append(GatewayProcess(base.model_copy(update={"port": free_port()})))
        yield started
    finally:
        for proc in started:
            proc.stop()
