"""The embedded database's write-ahead log restarts under steady load (issue 18).

A PASSIVE checkpoint only copies the frames that existed when it began, so under a steady stream of commits the
log was never fully copied, never restarted, and every commit appended to an ever longer file whose checkpoint
fsyncs stalled one call in a hundred for tens of milliseconds. The money connection's checkpoints now end with a
RESTART once their PASSIVE passes have caught up (``storage/money/sqlite.py``). These tests watch the log file
itself: its header's checkpoint sequence number goes up by one each time SQLite starts the log over.
"""

from __future__ import annotations

import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.invariants import assert_invariants
from tests.support.seed import Tenant, cent_tenant
from tests.support.servers import GatewayServer, running_gateway
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.storage.money.sqlite import WAL_KEEP_BYTES

BODY = {"model": "cent", "messages": [{"role": "user", "content": "x"}]}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp = tmp_path_factory.mktemp("wal-restarts")
    with running_gateway(make_settings(tmp, f"sqlite:///{tmp / 'tollway.db'}")) as server:
        yield server


@pytest.fixture
def tenant(embedded: GatewayServer, fake_upstream: FakeUpstreamThread) -> Iterator[Tenant]:
    made = cent_tenant(embedded.url, embedded.settings.admin_key, fake_upstream.base_url, topup="1000")
    yield made
    made.client.close()


def _wal(embedded: GatewayServer) -> Path:
    return Path(embedded.settings.database_url.removeprefix("sqlite:///") + "-wal")


def _restarts(wal: Path) -> int:
    """The log header's checkpoint sequence number (bytes 12–15): one more each time the log starts over."""
    with wal.open("rb") as f:
        header = f.read(16)
    return struct.unpack(">I", header[12:16])[0] if len(header) == 16 else 0


class Load:
    """Calls one after another from a thread, as a single client does, timing each."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.slowest = 0.0
        self.calls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=str(self.tenant.client.base_url), headers=dict(self.tenant.client.headers)) as c:
            while not self._stop.is_set():
                started = time.monotonic()
                answer = c.post("/v1/chat/completions", json=BODY)
                assert answer.status_code == 200, answer.text
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.calls += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _watch(wal: Path, seconds: float) -> tuple[set[int], int]:
    seen: set[int] = set()
    largest = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if wal.exists():
            seen.add(_restarts(wal))
            largest = max(largest, wal.stat().st_size)
        time.sleep(0.01)
    return seen, largest


def test_the_log_starts_over_several_times_a_second_under_steady_calls(embedded: GatewayServer, tenant: Tenant) -> None:
    wal = _wal(embedded)
    with Load(tenant) as load:
        seen, largest = _watch(wal, 3.0)
    assert load.calls > 50, load.calls
    # Four checkpoints a second, each ending in a restart; a loaded machine may skip some, never all. Before the
    # change the log only started over when it was truncated past 64 MiB: never in three seconds of this load.
    assert len(seen) >= 4, (sorted(seen), load.calls)
    assert largest <= WAL_KEEP_BYTES, largest
    assert_invariants(embedded.settings)


def test_a_long_read_postpones_the_restart_without_holding_up_calls(embedded: GatewayServer, tenant: Tenant) -> None:
    """A RESTART would wait for readers still on the old log while holding the write lock; it gives up at once
    instead and is tried again, so a read that lasts seconds (an export, a report) never holds up the money path."""
    wal = _wal(embedded)
    reader = sqlite3.connect(embedded.settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        with Load(tenant) as load:
            time.sleep(0.3)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM usage_logs").fetchone()  # the read transaction keeps its snapshot
            during, _ = _watch(wal, 1.5)
            reader.execute("COMMIT")
            after, _ = _watch(wal, 1.5)
    finally:
        reader.close()
    assert load.slowest < 1.0, load.slowest  # a RESTART waiting out the reader would hold a call for 1.5 s
    assert len(during) <= 2, sorted(during)  # at most the restart under way when the read began
    assert max(after) > max(during), (sorted(during), sorted(after))  # restarts resume once the reader is gone
    assert_invariants(embedded.settings)
