"""Graceful shutdown of a real ``tollway serve`` process (SPEC §14.3): on SIGTERM a stream that outlives
``TOLLWAY_DRAIN_S`` gets the mid-stream error event and settles as interrupted with its hold captured, a short
stream finishes normally, the money writer flushes, and the process exits 0."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import STORES, database_url_for, make_settings
from tests.support.invariants import assert_invariants, count
from tests.support.processes import GatewayProcess
from tests.support.seed import create_model, create_provider, create_tenant
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.storage.sql.tables import holds, usage_logs

LONG = "fake/words?n=60&delay_ms=100"  # 6 s of events
SHORT = "fake/words?n=4&delay_ms=100"  # done in well under the drain


class StreamReader(threading.Thread):
    """Reads one SSE stream to its end, recording the raw events and when the first one arrived."""

    def __init__(self, url: str, key: str, model: str, path: str = "/v1/chat/completions") -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.model, self.path = url, key, model, path
        self.events: list[bytes] = []
        self.request_id = ""
        self.first_event = threading.Event()
        self.ended_at = 0.0

    def run(self) -> None:
        body: dict[str, object] = {"model": self.model, "stream": True}
        if self.path == "/v1/responses":
            body["input"] = "hi"
        else:
            body["messages"] = [{"role": "user", "content": "hi"}]
        with httpx.stream(
            "POST", self.url + self.path, json=body, headers={"Authorization": f"Bearer {self.key}"}
        ) as response:
            self.request_id = response.headers["x-request-id"]
            for line in response.iter_lines():
                if line.startswith("data: "):
                    self.events.append(line[6:].encode())
                    self.first_event.set()
        self.ended_at = time.monotonic()


@pytest.mark.parametrize("store", STORES)
def test_sigterm_drains_streams_then_exits_0(
    store: str, tmp_path: Path, request: pytest.FixtureRequest, fake_upstream: FakeUpstreamThread
) -> None:
    settings = make_settings(tmp_path, database_url_for(store, tmp_path, request), drain_s=1.5)
    process = GatewayProcess(settings)
    try:
        with httpx.Client(
            base_url=process.url, headers={"Authorization": f"Bearer {settings.admin_key}"}, timeout=30
        ) as admin:
            provider = create_provider(admin, fake_upstream.base_url)
            create_model(admin, provider["id"], "long", LONG)
            create_model(admin, provider["id"], "short", SHORT)
            tenant = create_tenant(admin, process.url, provider["id"], provider["slug"])
        long, short = StreamReader(process.url, tenant.platform_key, "long"), None
        long.start()
        assert long.first_event.wait(10)
        response = StreamReader(process.url, tenant.platform_key, "long", "/v1/responses")
        response.start()
        assert response.first_event.wait(10)
        short = StreamReader(process.url, tenant.platform_key, "short")
        short.start()
        assert short.first_event.wait(10)
        signalled = time.monotonic()
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(timeout=30) == 0
        long.join(10)
        short.join(10)
        response.join(10)
    finally:
        process.stop()
        tenant.client.close()

    assert short.events[-1] == b"[DONE]"
    assert len([e for e in short.events if e != b"[DONE]"]) >= 4
    last = orjson.loads(long.events[-1])
    assert last["error"]["code"] == "service_unavailable"
    assert b"[DONE]" not in long.events
    assert len(long.events) < 40  # it was cut, not finished
    assert long.ended_at - signalled >= 1.4  # the stream had its drain time

    # A Responses stream ends with response.failed, in sequence (SPEC §7.6, §14.3).
    events = [orjson.loads(e) for e in response.events]
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "service_unavailable"
    numbers = [e["sequence_number"] for e in events]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    interrupted = usage_logs.c.status == "interrupted"
    assert count(settings, usage_logs, usage_logs.c.request_id == response.request_id, interrupted) == 1

    assert count(settings, usage_logs, usage_logs.c.request_id == long.request_id) == 1
    assert (
        count(settings, usage_logs, usage_logs.c.request_id == long.request_id, usage_logs.c.status == "interrupted")
        == 1
    )
    assert (
        count(settings, usage_logs, usage_logs.c.request_id == short.request_id, usage_logs.c.status == "success") == 1
    )
    for request_id in (long.request_id, short.request_id, response.request_id):
        assert count(settings, holds, holds.c.request_id == request_id, holds.c.status == "captured") == 1
    assert count(settings, holds, holds.c.status == "active") == 0
    assert_invariants(settings)
