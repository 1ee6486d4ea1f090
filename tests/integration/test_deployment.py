"""The multi-instance setup of docs/deployment.md, run from local binaries: two ``tollway serve`` processes (each with
its own data directory) on PostgreSQL and Redis, sharing one secret key, behind nginx with the shipped
deploy/nginx.conf. Calls through the balancer reach both instances and the money adds up to the cent; when one
instance drains and stops, calls keep succeeding through the other."""

from __future__ import annotations

import asyncio
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.conftest import make_settings
from tests.integration.test_money_concurrency import settled
from tests.integration.test_scale_out import _metrics
from tests.support.balancer import Nginx, nginx_binary
from tests.support.invariants import assert_invariants
from tests.support.processes import GatewayProcess
from tests.support.redis_server import start_redis_or_skip
from tests.support.seed import Tenant, cent_tenant, create_end_user
from tests.support.servers import PostgresServer, free_port
from tollway.fake_upstream.server import FakeUpstreamThread

pytestmark = pytest.mark.postgres

CENT = {"model": "cent", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10}  # exactly $0.01 a call
ROUTE = 'tollway_requests_total{route="/v1/chat/completions",status="200"}'


@pytest.fixture
def nginx_available() -> None:
    if nginx_binary() is None:
        if os.environ.get("TOLLWAY_REQUIRE_NGINX", "").lower() in ("1", "true", "yes"):
            pytest.fail("nginx is required (TOLLWAY_REQUIRE_NGINX=1): apt-get install -y nginx")
        message = "nginx not found: the deployment test is SKIPPED (CI runs it; apt-get install -y nginx)"
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # shown in the summary, not turned into an error by filterwarnings
            warnings.warn(message, pytest.PytestWarning, stacklevel=1)
        pytest.skip(message)


class Deployment:
    def __init__(self, processes: list[GatewayProcess], balancer: Nginx, tenant: Tenant) -> None:
        self.processes = processes
        self.balancer = balancer
        self.tenant = tenant

    def wallet(self) -> dict[str, float]:
        response = self.tenant.client.get(f"/v1/platforms/{self.tenant.platform_id}/wallet")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def served(self) -> list[float]:
        """Successful chat calls each instance answered (its own /metrics, read directly)."""
        return [_metrics(httpx.get(p.url + "/metrics").text).get(ROUTE, 0.0) for p in self.processes]


@pytest.fixture
def deployment(
    nginx_available: None, tmp_path: Path, postgres_server: PostgresServer, fake_upstream: FakeUpstreamThread
) -> Iterator[Deployment]:
    redis = start_redis_or_skip()
    shared = make_settings(tmp_path, postgres_server.new_database(), redis_url=redis.url, expected_instances=2)
    processes: list[GatewayProcess] = []
    balancer: Nginx | None = None
    tenant: Tenant | None = None
    try:
        for index in range(2):
            own = {"port": free_port(), "data_dir": tmp_path / f"instance-{index}"}
            processes.append(GatewayProcess(shared.model_copy(update=own)))
        balancer = Nginx(tmp_path / "nginx", [f"127.0.0.1:{p.settings.port}" for p in processes])
        tenant = cent_tenant(balancer.url, shared.admin_key, fake_upstream.base_url, topup="10")
        yield Deployment(processes, balancer, tenant)
    finally:
        if tenant is not None:
            tenant.client.close()
        if balancer is not None:
            balancer.stop()
        for process in processes:
            process.stop()
        redis.stop()


async def _calls(url: str, key: str, count: int) -> Counter[int]:
    async with aiohttp.ClientSession() as session:

        async def one() -> int:
            headers = {"Authorization": f"Bearer {key}"}
            async with session.post(url + "/v1/chat/completions", json=CENT, headers=headers) as response:
                await response.read()
                return response.status

        return Counter(await asyncio.gather(*(one() for _ in range(count))))


def test_calls_through_nginx_reach_both_instances_and_the_money_adds_up(deployment: Deployment) -> None:
    lb = deployment.balancer.url
    ready = httpx.get(lb + "/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "redis": "ok"}, ready.text
    user_id, key = create_end_user(deployment.tenant, budget_usd="1")
    before = deployment.wallet()["balance_usd"]

    assert asyncio.run(_calls(lb, key, 60)) == {200: 60}

    assert all(count > 0 for count in deployment.served()), deployment.served()  # nginx spread them
    after = settled(deployment.wallet)
    assert round(before - after["balance_usd"], 9) == 0.6  # 60 calls at exactly $0.01, each charged once
    budget = deployment.tenant.client.get(f"/v1/platforms/{deployment.tenant.platform_id}/end-users/{user_id}/budget")
    assert budget.json()["used_usd"] == 0.6, budget.text
    assert_invariants(deployment.processes[0].settings)


def test_a_drained_instance_leaves_the_balancer_serving_through_the_other(deployment: Deployment) -> None:
    lb = deployment.balancer.url
    _user_id, key = create_end_user(deployment.tenant)
    assert asyncio.run(_calls(lb, key, 10)) == {200: 10}
    before = settled(deployment.wallet)["balance_usd"]

    deployment.processes[0].stop()  # SIGTERM: drains, then exits 0
    assert deployment.processes[0].proc.returncode == 0
    statuses = asyncio.run(_calls(lb, key, 30))

    assert statuses == {200: 30}, (statuses, deployment.balancer.errors())
    assert round(before - settled(deployment.wallet)["balance_usd"], 9) == 0.3
    assert_invariants(deployment.processes[1].settings)
