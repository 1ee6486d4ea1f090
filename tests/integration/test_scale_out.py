"""Scale-out acceptance (SPEC §2.2, §10, §13.3) with real ``tollway serve`` processes sharing PostgreSQL and Redis:
limits are exact across instances, revocation and expiry reach every instance within 1 s, suspension at once, and a
Redis crash mid-traffic degrades limits without a single 5xx while money stays exact."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_settings
from tests.integration.test_money_concurrency import settled
from tests.support.invariants import assert_invariants
from tests.support.processes import GatewayProcess
from tests.support.redis_server import RedisServer, start_redis_or_skip
from tests.support.seed import Tenant, cent_tenant
from tests.support.servers import PostgresServer, free_port
from tollway.fake_upstream.server import FakeUpstreamThread

pytestmark = pytest.mark.postgres

CENT = {"model": "cent", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10}  # exactly $0.01 a call


class Cluster:
    def __init__(self, processes: list[GatewayProcess], redis: RedisServer, tenant: Tenant) -> None:
        self.processes = processes
        self.redis = redis
        self.tenant = tenant

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.processes]

    def end_user(self, external_id: str, rpm: int | None = None) -> tuple[str, str]:
        base = f"/v1/platforms/{self.tenant.platform_id}/end-users"
        created = self.tenant.client.post(base, json={"external_id": external_id})
        assert created.status_code == 201, created.text
        user = created.json()
        if rpm is not None:
            put = self.tenant.client.put(f"{base}/{user['id']}/rate-limits", json={"rpm_limit": rpm})
            assert put.status_code == 200, put.text
        return user["id"], user["api_key"]["raw_key"]


def _start_cluster(
    tmp: Path, postgres: PostgresServer, fake: FakeUpstreamThread, count: int
) -> tuple[list[GatewayProcess], RedisServer, Tenant]:
    redis = start_redis_or_skip()
    base = make_settings(tmp, postgres.new_database(), redis_url=redis.url, expected_instances=count)
    processes: list[GatewayProcess] = []
    try:
        for _ in range(count):
            processes.append(GatewayProcess(base.model_copy(update={"port": free_port()})))
        first = processes[0]
        tenant = cent_tenant(first.url, first.settings.admin_key, fake.base_url, topup="100")
    except BaseException:
        for process in processes:
            process.stop()
        redis.stop()
        raise
    return processes, redis, tenant


def _stop(processes: list[GatewayProcess], redis: RedisServer, tenant: Tenant) -> None:
    tenant.client.close()
    for process in processes:
        process.stop()
    redis.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer, fake_upstream: FakeUpstreamThread
) -> Iterator[Cluster]:
    processes, redis, tenant = _start_cluster(tmp_path_factory.mktemp("cluster"), postgres_server, fake_upstream, 3)
    try:
        yield Cluster(processes, redis, tenant)
    finally:
        _stop(processes, redis, tenant)


async def _fire(urls: list[str], key: str, calls: int, path: str = "/v1/chat/completions") -> list[int]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> int:
            headers = {"Authorization": f"Bearer {key}"}
            async with session.post(urls[i % len(urls)] + path, json=CENT, headers=headers) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(one(i) for i in range(calls)))
    await asyncio.sleep(0.1)
    return list(statuses)


def _metrics(text: str) -> dict[str, float]:
    """Prometheus text as ``{'name{label="v"}': value}`` (labels in their exposition order)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def _wallet(tenant: Tenant) -> dict[str, Any]:
    return tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()


def test_100_rpm_over_three_instances_admits_exactly_100(cluster: Cluster, fake_upstream: FakeUpstreamThread) -> None:
    _, key = cluster.end_user("rpm-100", rpm=100)
    before_calls = fake_upstream.request_count
    before = settled(lambda: _wallet(cluster.tenant))["balance_usd"]

    statuses = asyncio.run(_fire(cluster.urls, key, 200))

    assert Counter(statuses) == {200: 100, 429: 100}
    assert fake_upstream.request_count - before_calls == 100
    after = settled(lambda: _wallet(cluster.tenant))
    assert round(before - after["balance_usd"], 9) == 1.0  # 100 calls at exactly $0.01
    assert_invariants(cluster.processes[0].settings)


def _first_refusal(url: str, key: str, deadline: float) -> float | None:
    """Poll ``GET /v1/models`` until the key is refused; the monotonic time of the first 401, or None."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=5) as client:
        while time.monotonic() < deadline:
            sent = time.monotonic()
            if client.get("/v1/models").status_code == 401:
                return sent
            time.sleep(0.02)
    return None


def test_a_revoked_key_is_refused_by_every_instance_within_one_second(cluster: Cluster) -> None:
    tenant = cluster.tenant
    created = tenant.client.post(f"/v1/platforms/{tenant.platform_id}/api-keys", json={"name": "to revoke"})
    assert created.status_code == 201, created.text
    key = created.json()["raw_key"]
    for url in cluster.urls:  # warm every instance's positive cache
        assert httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    revoked = tenant.client.delete(f"/v1/platforms/{tenant.platform_id}/api-keys/{created.json()['id']}")
    assert revoked.status_code in (200, 204), revoked.text
    committed = time.monotonic()
    for url in cluster.urls:
        refused_at = _first_refusal(url, key, committed + 3)
        assert refused_at is not None and refused_at - committed <= 1.0, (url, refused_at and refused_at - committed)


def test_an_expired_key_is_refused_from_its_expiry_on_every_instance(cluster: Cluster) -> None:
    tenant = cluster.tenant
    expires = datetime.now(UTC) + timedelta(seconds=2)
    created = tenant.client.post(
        f"/v1/platforms/{tenant.platform_id}/api-keys",
        json={"name": "short-lived", "expires_at": expires.isoformat().replace("+00:00", "Z")},
    )
    assert created.status_code == 201, created.text
    key = created.json()["raw_key"]
    headers = {"Authorization": f"Bearer {key}"}
    for url in cluster.urls:
        assert httpx.get(url + "/v1/models", headers=headers).status_code == 200
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.05)
    for url in cluster.urls:  # the positive cache never outlives expires_at
        assert httpx.get(url + "/v1/models", headers=headers).status_code == 401


def test_suspension_and_deactivation_reach_every_instance(cluster: Cluster) -> None:
    tenant = cluster.tenant
    user_id, key = cluster.end_user("suspend-me")
    base = f"/v1/platforms/{tenant.platform_id}/end-users/{user_id}"
    assert tenant.client.post(f"{base}/budget", json={"max_usd": "1"}).status_code == 201
    for url in cluster.urls:
        assert asyncio.run(_fire([url], key, 1)) == [200]
    assert tenant.client.patch(f"{base}/budget", json={"is_suspended": True}).status_code == 200
    for url in cluster.urls:  # budgets are read in the hold transaction: no cache to wait out
        assert asyncio.run(_fire([url], key, 1)) == [402]
    assert tenant.client.patch(f"{base}/budget", json={"is_suspended": False}).status_code == 200
    assert tenant.client.patch(base, json={"is_active": False}).status_code == 200
    changed = time.monotonic()
    time.sleep(1.0)
    assert time.monotonic() - changed >= 1.0
    for url in cluster.urls:
        assert asyncio.run(_fire([url], key, 1)) == [403]


def test_redis_killed_mid_traffic_no_5xx_degraded_limits_exact_money(
    tmp_path: Path, postgres_server: PostgresServer, fake_upstream: FakeUpstreamThread
) -> None:
    processes, redis, tenant = _start_cluster(tmp_path, postgres_server, fake_upstream, 2)
    try:
        small = Cluster(processes, redis, tenant)
        _, key = small.end_user("through-the-crash", rpm=1000)
        _, limited_key = small.end_user("limited", rpm=40)

        async def traffic() -> tuple[list[int], list[int]]:
            first = await _fire(small.urls, key, 150)
            redis.kill()
            second = await _fire(small.urls, key, 150)
            return first, second

        first, second = asyncio.run(traffic())
        assert set(first) == {200}
        assert set(second) == {200}  # 150 calls stay under each instance's share (1000 / 2): no 5xx, no 429

        # Degraded: each of the 2 instances enforces its share of the 40 RPM limit, 20, on its own.
        limited = asyncio.run(_fire(small.urls, limited_key, 60))
        assert Counter(limited) == {200: 40, 429: 20}
        for url in small.urls:
            ready = httpx.get(url + "/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "degraded"
            metrics = _metrics(httpx.get(url + "/metrics").text)
            assert metrics["tollway_ratelimit_degraded"] == 1
            assert metrics["tollway_ratelimit_local_decisions_total"] >= 30  # each instance's calls since the crash
            assert metrics['tollway_ratelimit_rejections_total{dimension="rpm"}'] == 10

        wallet = settled(lambda: _wallet(tenant))
        assert wallet["balance_usd"] == 100 - 0.01 * 340 and wallet["held_usd"] == 0  # 300 + 40 calls, exactly
        assert_invariants(processes[0].settings)
    finally:
        _stop(processes, redis, tenant)
