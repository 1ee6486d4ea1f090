"""The client matrix (issue 15): the real client libraries, pinned in pyproject.toml (Python) and
tests/clients/node/package-lock.json (Node), drive a served Tollway backed by the fake upstream. Each test runs as a
fresh end user with a budget, so that it can check what the client saw against what Tollway billed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.invariants import checked_gateway
from tests.support.seed import Tenant, create_model, create_provider, create_tenant
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

TOOL_CALL = 'name=get_weather&args={"city":"Paris"}'
# slug -> (provider kind, upstream model): the fake upstream's behaviour is chosen by the upstream model name.
MODELS = {
    "echo": ("openai_compatible", "fake/echo?in=7&out=5"),
    "agent": ("openai_compatible", f"fake/agent?{TOOL_CALL}"),
    "agent-native": ("openai", f"fake/agent?{TOOL_CALL}"),
    "thinker": ("openai_compatible", "fake/default?thought=Paris+is+in+France."),
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """The embedded default (SQLite): the matrix is about the wire format, not the store."""
    tmp: Path = tmp_path_factory.mktemp("clients")
    with checked_gateway(make_settings(tmp, f"sqlite:///{tmp / 'tollway.db'}")) as server:
        yield server


@pytest.fixture(scope="module")
def tenant(admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread) -> Iterator[Tenant]:
    providers = {kind: create_provider(admin, fake_upstream.base_url, kind) for kind in ("openai_compatible", "openai")}
    for slug, (kind, upstream) in MODELS.items():
        create_model(admin, providers[kind]["id"], slug, upstream)
    tenant = create_tenant(
        admin, gateway.url, providers["openai_compatible"]["id"], providers["openai_compatible"]["slug"]
    )
    configs = f"/v1/platforms/{tenant.platform_id}/llm-configs"
    native = tenant.client.post(configs, json={"provider_id": providers["openai"]["id"], "api_key": "sk-x"})
    assert native.status_code == 201, native.text
    yield tenant
    tenant.client.close()


@dataclass
class Account:
    """A fresh end user with a $5 budget, and what Tollway recorded for it."""

    tenant: Tenant
    end_user_id: str
    key: str
    base_url: str

    def rows(self, expected: int) -> list[dict[str, Any]]:
        """The end user's usage rows, once ``expected`` of them have committed (settlements are asynchronous)."""
        path = f"/v1/platforms/{self.tenant.platform_id}/logs"
        deadline = time.monotonic() + 10
        while True:
            rows = self.tenant.client.get(path, params={"end_user_id": self.end_user_id, "limit": 100}).json()["data"]
            if len(rows) >= expected or time.monotonic() > deadline:
                assert len(rows) == expected, rows
                return rows
            time.sleep(0.05)

    def budget_used(self) -> Decimal:
        path = f"/v1/platforms/{self.tenant.platform_id}/end-users/{self.end_user_id}/budget"
        return Decimal(str(self.tenant.client.get(path).json()["used_usd"]))

    def assert_billed(self, rows: list[dict[str, Any]]) -> None:
        """Every row succeeded and was charged, and the budget was debited by exactly their charges."""
        assert all(r["status"] == "success" for r in rows), rows
        assert all(Decimal(str(r["charged_usd"])) > 0 for r in rows), rows
        assert self.budget_used() == sum(Decimal(str(r["charged_usd"])) for r in rows)


@pytest.fixture
def account(gateway: GatewayServer, tenant: Tenant) -> Account:
    created = tenant.client.post(
        f"/v1/platforms/{tenant.platform_id}/end-users", json={"external_id": f"client-{uuid.uuid4().hex[:8]}"}
    )
    assert created.status_code == 201, created.text
    user = created.json()
    budget = tenant.client.post(
        f"/v1/platforms/{tenant.platform_id}/end-users/{user['id']}/budget", json={"max_usd": "5"}
    )
    assert budget.status_code == 201, budget.text
    return Account(tenant, user["id"], user["api_key"]["raw_key"], gateway.url + "/v1")
