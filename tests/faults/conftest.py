"""The fault suite's fixtures: one cluster for the module (PostgreSQL, Redis, the fake upstream, two instances),
and ``figures``, which prints a line to the terminal as the suite runs, whatever pytest captures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import _running_postgres
from tests.faults.cluster import FaultCluster
from tests.support.redis_server import RedisServer, redis_server_fixture
from tests.support.servers import PostgresServer
from tollway.fake_upstream.server import FakeUpstreamThread


@pytest.fixture(scope="module")
def fault_postgres() -> Iterator[PostgresServer]:
    """A server of the module's own: the scenarios stop, freeze and restart it."""
    yield from _running_postgres()


@pytest.fixture(scope="module")
def fault_redis() -> Iterator[RedisServer]:
    yield from redis_server_fixture()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    fault_postgres: PostgresServer,
    fault_redis: RedisServer,
    fake_upstream: FakeUpstreamThread,
) -> Iterator[FaultCluster]:
    tmp: Path = tmp_path_factory.mktemp("faults")
    started = FaultCluster(tmp, fault_postgres, fault_redis, fake_upstream)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        if reporter is None:
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            reporter.write_line(line)

    return write
