"""``/metrics`` with ``tollway serve --workers 2`` (SPEC §13.4 "correct across workers"): whichever worker answers a
scrape, the counters are the sum over both workers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_settings
from tests.support.processes import GatewayProcess
from tests.support.redis_server import start_redis_or_skip
from tests.support.servers import PostgresServer

pytestmark = pytest.mark.postgres

CALLS = 40


def _healthz_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tollway_requests_total" and sample.labels == {"route": "/healthz", "status": "200"}:
                return sample.value
    return 0.0


def _parent_of(pid: Path) -> str | None:
    try:
        return (pid / "stat").read_text().rsplit(")", 1)[1].split()[1]
    except (OSError, IndexError):  # the process ended while we looked
        return None


def _workers_with_counters(parent: int) -> set[str]:
    children = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _parent_of(p) == str(parent)]
    for child in children:
        environ = dict(
            item.split("=", 1) for item in (Path("/proc") / child / "environ").read_text().split("\0") if "=" in item
        )
        directory = environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            return {f.stem.split("_")[-1] for f in Path(directory).glob("counter_*.db")} & set(children)
    return set()


def test_every_scrape_sums_both_workers(tmp_path: Path, postgres_server: PostgresServer) -> None:
    redis = start_redis_or_skip()
    settings = make_settings(tmp_path, postgres_server.new_database(), redis_url=redis.url, workers=2)
    process = GatewayProcess(settings)
    try:
        for _ in range(CALLS):  # a new connection each time: the kernel spreads them over the workers
            with httpx.Client(base_url=process.url) as client:
                assert client.get("/healthz").status_code == 200
        scrapes = []
        for _ in range(8):
            with httpx.Client(base_url=process.url) as client:
                response = client.get("/metrics")
            assert response.status_code == 200
            scrapes.append(_healthz_count(response.text))
        assert scrapes == [CALLS] * 8
        # Both workers served some of them: each writes its own counter file in the shared directory.
        assert len(_workers_with_counters(process.proc.pid)) == 2
    finally:
        process.stop()
        redis.stop()
