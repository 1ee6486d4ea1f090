"""Shared fixtures: the fake upstream, a throwaway PostgreSQL, and a running gateway per store.

PostgreSQL tests are mandatory when TOLLWAY_REQUIRE_POSTGRES=1 (CI sets it); elsewhere they are skipped only when
the server binaries are missing, with a loud warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.canary import WATCH, canary_watch  # noqa: F401  (session-wide canary secrets, SPEC §15)
from tests.support.invariants import checked_gateway
from tests.support.servers import GatewayServer, PostgresServer, free_port, postgres_available
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.settings import Settings

STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _postgres_required() -> bool:
    return os.environ.get("TOLLWAY_REQUIRE_POSTGRES", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstreamThread]:
    with FakeUpstreamThread() as fake:
        yield fake


def _running_postgres() -> Iterator[PostgresServer]:
    if not postgres_available():
        if _postgres_required():
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are missing but TOLLWAY_REQUIRE_POSTGRES=1")
        message = "PostgreSQL binaries not found: PostgreSQL tests are SKIPPED (CI runs them)"
        warnings.warn(message, pytest.PytestWarning, stacklevel=1)
        pytest.skip(message)
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    yield from _running_postgres()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A server of the test's own, which it may stop, freeze or restart (``halt``, ``freeze``, ``resume``)."""
    yield from _running_postgres()


def make_settings(tmp: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "admin_key": WATCH.admin_key(),
        "secret_key": WATCH.secret_key(),
        "data_dir": tmp / "data",
        "host": "127.0.0.1",
        "port": free_port(),
        "allow_private_urls": True,
        "log_level": "warning",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def database_url_for(store: str, tmp: Path, request: pytest.FixtureRequest) -> str:
    if store == "sqlite":
        return f"sqlite:///{tmp / 'tollway.db'}"
    pg: PostgresServer = request.getfixturevalue("postgres_server")
    return pg.new_database()


@pytest.fixture(scope="module", params=STORES)
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp = tmp_path_factory.mktemp("gateway")
    settings = make_settings(tmp, database_url_for(request.param, tmp, request))
    with checked_gateway(settings) as server:
        yield server


@pytest.fixture(scope="module")
def admin(gateway: GatewayServer) -> Iterator[httpx.Client]:
    assert gateway.settings.admin_key is not None
    with httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.settings.admin_key}"}, timeout=30
    ) as client:
        yield client
