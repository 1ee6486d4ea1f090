"""Instance presence (SPEC §13.2): without Redis a second instance on one database is refused at start; a crashed
instance's heartbeat is waited out (≤ 15 s) or, on this host, recognised as dead at once."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import STORES, database_url_for, make_settings
from tests.support.processes import GatewayProcess, gateway_env
from tests.support.servers import free_port
from tollway.domain.clock import utcnow
from tollway.domain.ids import new_id
from tollway.domain.instances import Heartbeat
from tollway.settings import Settings
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.instances import InstanceStore
from tollway.storage.sql.migrate import upgrade
from tollway.workers.heartbeat import AnotherInstanceRunning, ensure_alone


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    config = make_settings(tmp_path, database_url_for(request.param, tmp_path, request))
    asyncio.run(upgrade(config))
    return config


def _other(hostname: str, pid: int, at_offset_s: float) -> Heartbeat:
    return Heartbeat(new_id(), hostname, pid, False, utcnow() + timedelta(seconds=at_offset_s))


async def _check(settings: Settings, rows: list[Heartbeat], beat_each_step: bool = False) -> tuple[float, int]:
    """Run ``ensure_alone`` against ``rows`` under a simulated clock; returns (simulated seconds waited, rows left)."""
    engine = create_engine(settings)
    instances = InstanceStore(engine)
    try:
        for row in rows:
            await instances.register(row)
        now = [utcnow()]
        waited = [0.0]

        async def sleep(seconds: float) -> None:
            now[0] += timedelta(seconds=seconds)
            waited[0] += seconds
            if beat_each_step:
                for row in rows:
                    await instances.beat(row.id, now[0])

        await ensure_alone(instances, clock=lambda: now[0], sleep=sleep)
        return waited[0], len(await instances.others(None))
    finally:
        await engine.dispose()


def test_an_empty_database_starts_at_once(settings: Settings) -> None:
    assert asyncio.run(_check(settings, [])) == (0.0, 0)


def test_a_stale_heartbeat_from_another_host_is_waited_out(settings: Settings) -> None:
    waited, left = asyncio.run(_check(settings, [_other("elsewhere", 4242, -10)]))
    assert 5.0 <= waited <= 6.0  # 15 s after its last beat, which was 10 s ago
    assert left == 1  # another host's row is never deleted by us


def test_a_heartbeat_older_than_15_s_is_ignored(settings: Settings) -> None:
    assert asyncio.run(_check(settings, [_other("elsewhere", 4242, -16)]))[0] == 0.0


def test_a_live_instance_elsewhere_is_refused(settings: Settings) -> None:
    with pytest.raises(AnotherInstanceRunning, match="TOLLWAY_REDIS_URL") as caught:
        asyncio.run(_check(settings, [_other("elsewhere", 4242, 0)], beat_each_step=True))
    assert "host elsewhere, pid 4242" in str(caught.value)


def test_a_dead_process_on_this_host_is_forgotten_at_once(settings: Settings) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    waited, left = asyncio.run(_check(settings, [_other(socket.gethostname(), dead.pid, 0)]))
    assert (waited, left) == (0.0, 0)


def test_a_second_instance_without_redis_is_refused_then_starts_after_a_clean_exit(tmp_path: Path) -> None:
    """Real ``tollway serve`` processes on one SQLite file."""
    base = make_settings(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}")
    first = GatewayProcess(base)
    try:
        second = base.model_copy(update={"port": free_port()})
        started = time.monotonic()
        refused = subprocess.run(
            [str(Path(sys.executable).with_name("tollway")), "serve"],
            env=gateway_env(second),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert refused.returncode != 0
        assert time.monotonic() - started < 12  # the first one beats every 5 s
        lines = refused.stderr.strip().splitlines()
        assert lines == [lines[-1]] and "TOLLWAY_REDIS_URL" in lines[-1] and f"pid {first.proc.pid}" in lines[-1]
    finally:
        first.stop()  # a clean exit deletes its row
    started = time.monotonic()
    again = GatewayProcess(base.model_copy(update={"port": free_port()}))
    try:
        assert time.monotonic() - started < 10
    finally:
        again.kill()  # a crash leaves its row behind ...
    started = time.monotonic()
    third = GatewayProcess(base.model_copy(update={"port": free_port()}))
    try:
        assert time.monotonic() - started < 10  # ... recognised as dead at once on this host, not waited out 15 s
    finally:
        third.stop()
