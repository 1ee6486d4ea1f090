"""The fault suite's cluster: two ``tollway serve`` processes, each with its own data directory (its own settlement
journal), on one throwaway PostgreSQL and one Redis, with the fake upstream; seeded through the real APIs with a
funded tenant and priced models whose cost is known exactly, and fresh end users for each scenario."""

from __future__ import annotations

import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import make_settings
from tests.integration.test_scale_out import _metrics as prometheus_samples
from tests.support.processes import GatewayProcess, StderrLines
from tests.support.redis_server import RedisServer
from tests.support.seed import Tenant, create_model, create_provider, create_tenant
from tests.support.servers import PostgresServer, free_port
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.storage.money.journal import JOURNAL_SUFFIX, read_owed

NANOS_PER_TOKEN = 1_000_000  # output at $1,000 per Mtok, input free: a call costs its completion tokens × 10⁶ n$
# slug -> (upstream model string, completion tokens it reports): the price of a complete answer is known exactly.
MODELS = {
    "quick": ("fake/usage?in=0&out=10&ms=50", 10),  # $0.01, answered after 50 ms
    "paced": ("fake/words?n=10&delay_ms=150&in=0&out=20", 20),  # $0.02, ten events over 1.5 s
    "long": ("fake/words?n=200&delay_ms=100&in=0&out=200", 200),  # $0.20, a 20 s stream: cut by the faults
}
TOPUP_USD = 100
BUDGET_USD = 5
RPM = 6  # on every other end user; even, so the two instances' local shares (3 each) add up to it
DRAIN_S = 3.0
TOTAL_TIMEOUT_S = 60.0  # a hold expires 120 s after it was placed (SPEC §9.3)


def price_nanos(model: str) -> int:
    return MODELS[model][1] * NANOS_PER_TOKEN


@dataclass(frozen=True)
class EndUser:
    id: str
    key: str
    rpm: int | None


class FaultCluster:
    def __init__(self, tmp: Path, postgres: PostgresServer, redis: RedisServer, fake: FakeUpstreamThread) -> None:
        self.postgres, self.redis, self.fake = postgres, redis, fake
        base = make_settings(
            tmp,
            postgres.new_database(),
            redis_url=redis.url,
            expected_instances=2,
            drain_s=DRAIN_S,
            total_timeout_s=TOTAL_TIMEOUT_S,
        )
        self.settings = [
            base.model_copy(update={"port": free_port(), "data_dir": tmp / f"instance-{i}"}) for i in range(2)
        ]
        self.processes: list[GatewayProcess | None] = [None, None]
        self.logs: list[StderrLines | None] = [None, None]
        self.finished_logs: list[str] = []  # the lines of processes that are gone
        try:
            for i in range(2):
                self.start(i)
            self.provider = self._seed(fake.base_url)
        except BaseException:
            self._stop_all()
            raise

    @property
    def urls(self) -> list[str]:
        return [f"http://{s.host}:{s.port}" for s in self.settings]

    @property
    def admin_key(self) -> str:
        assert self.settings[0].admin_key is not None
        return self.settings[0].admin_key

    def start(self, i: int) -> None:
        process = GatewayProcess(self.settings[i])
        self.processes[i], self.logs[i] = process, StderrLines(process)

    def kill(self, i: int) -> None:
        """kill -9: no shutdown hook runs, the streams it serves end without their terminal event."""
        process = self.processes[i]
        assert process is not None
        process.kill()
        self._forget(i)

    def terminate(self, i: int, timeout: float) -> int:
        """SIGTERM, as a deploy does; the exit code once the process has drained."""
        process = self.processes[i]
        assert process is not None
        process.proc.send_signal(signal.SIGTERM)
        code = process.proc.wait(timeout=timeout)
        process.stop()
        self._forget(i)
        return code

    def _forget(self, i: int) -> None:
        log = self.logs[i]
        if log is not None:
            self.finished_logs.append(log.finish())
        self.processes[i], self.logs[i] = None, None

    def logged(self, fragment: str) -> int:
        """How many log lines of every process the cluster ran contain ``fragment``."""
        texts = [*self.finished_logs, *("".join(log.lines) for log in self.logs if log is not None)]
        return sum(text.count(fragment) for text in texts)

    def metrics(self, i: int) -> dict[str, float]:
        return prometheus_samples(httpx.get(self.urls[i] + "/metrics", timeout=10).text)

    def ready(self, i: int) -> dict[str, object] | None:
        """``/readyz``'s checks when the instance is ready, else None."""
        try:
            response = httpx.get(self.urls[i] + "/readyz", timeout=5)
        except httpx.HTTPError:
            return None
        return response.json()["checks"] if response.status_code == 200 else None

    def wait_ready(self, redis: str = "ok", timeout: float = 30) -> float:
        """Seconds until both instances are ready with Redis in the given state."""
        started = time.monotonic()
        while not all((self.ready(i) or {}).get("redis") == redis for i in range(2)):
            assert time.monotonic() - started < timeout, [self.ready(i) for i in range(2)]
            time.sleep(0.1)
        return time.monotonic() - started

    def journaled(self) -> int:
        """Settlements owed in the instances' journals (zero once every one has committed; records written ahead of
        commits are not counted)."""
        return sum(
            len(read_owed(path)) for s in self.settings for path in (s.data_dir / "journal").glob(f"*{JOURNAL_SUFFIX}")
        )

    def _admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.urls[0], headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=30)

    def _seed(self, upstream: str) -> dict[str, str]:
        with self._admin() as admin:
            provider = create_provider(admin, upstream)
            for slug, (upstream_model, tokens) in MODELS.items():
                prices = {"input_price_per_mtok": "0", "output_price_per_mtok": "1000", "max_output_tokens": tokens}
                create_model(admin, provider["id"], slug, upstream_model, **prices)
        return {"id": provider["id"], "slug": provider["slug"]}

    def new_tenant(self) -> Tenant:
        """A platform of the scenario's own, so that its wallet moves only with the scenario's calls."""
        with self._admin() as admin:
            return create_tenant(admin, self.urls[0], self.provider["id"], self.provider["slug"], topup=str(TOPUP_USD))

    def new_end_users(self, tenant: Tenant, count: int) -> list[EndUser]:
        """Fresh end users, each with a budget; every other one (the even ones) limited to ``RPM``."""
        base = f"/v1/platforms/{tenant.platform_id}/end-users"
        users = []
        for i in range(count):
            created = tenant.client.post(base, json={"external_id": f"fault-{uuid.uuid4().hex[:12]}"})
            assert created.status_code == 201, created.text
            user_id = created.json()["id"]
            budget = tenant.client.post(f"{base}/{user_id}/budget", json={"max_usd": str(BUDGET_USD)})
            assert budget.status_code == 201, budget.text
            rpm = RPM if i % 2 == 0 else None
            if rpm is not None:
                put = tenant.client.put(f"{base}/{user_id}/rate-limits", json={"rpm_limit": rpm})
                assert put.status_code == 200, put.text
            users.append(EndUser(user_id, created.json()["api_key"]["raw_key"], rpm))
        return users

    def reconcile(self) -> dict[str, object]:
        live = next(i for i in range(2) if self.processes[i] is not None)
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        response = httpx.get(self.urls[live] + "/v1/admin/reconcile", headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body

    def heal(self) -> None:
        """An instance a failed scenario left down is started again, so the next one begins with two."""
        for i in range(2):
            process = self.processes[i]
            if process is None or process.proc.poll() is not None:
                self.processes[i] = None
                self.start(i)

    def close(self) -> None:
        self._stop_all()

    def _stop_all(self) -> None:
        for i in range(2):
            process = self.processes[i]
            if process is not None:
                process.stop()
                self._forget(i)
