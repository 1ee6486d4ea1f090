"""Fixtures of the SDK's tests: a live Tollway (the repository's ``GatewayServer`` on SQLite, served by uvicorn) wired
to the fake upstream, an operator client, and a fresh funded platform per test, all driven through the SDK itself."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tollway.fake_upstream.server import FakeUpstreamThread

from fault_proxy import FaultProxy
from tollway_sdk import AsyncTollway, Tollway
from tollway_sdk._base_client import BaseClient, Call
from tollway_sdk.types import Provider

from tests.conftest import fake_upstream, make_settings  # noqa: F401  (the session's fake upstream fixture)
from tests.support.canary import WATCH, canary_watch  # noqa: F401  (no secret in any log line or error body)
from tests.support.fake_stripe import FakeStripe
from tests.support.seed import FAKE_PROVIDER_KEY
from tests.support.servers import GatewayServer

# slug -> upstream model name (the fake upstream's behaviour is chosen by that name)
MODELS = {
    "echo": "fake/echo",
    "usage": "fake/usage?in=5&out=6",
    "cent": "fake/usage?in=0&out=10",  # exactly $0.01 a call (priced below)
    "slow": "fake/echo?ms=8000",
}


STRIPE_SECRET_KEY = "sk_test_" + uuid.uuid4().hex
STRIPE_WEBHOOK_SECRET = "whsec_" + uuid.uuid4().hex
WATCH.remember(STRIPE_SECRET_KEY)
WATCH.remember(STRIPE_WEBHOOK_SECRET)


@pytest.fixture(scope="session")
def fake_stripe() -> Iterator[FakeStripe]:
    server = FakeStripe(STRIPE_SECRET_KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_stripe: FakeStripe) -> Iterator[GatewayServer]:
    """Tollway on SQLite, with card top-ups pointed at the fake Stripe API."""
    tmp = tmp_path_factory.mktemp("sdk-gateway")
    settings = make_settings(
        tmp,
        f"sqlite:///{tmp / 'tollway.db'}",
        stripe_secret_key=STRIPE_SECRET_KEY,
        stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
        stripe_api_base=fake_stripe.url,
    )
    server = GatewayServer(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def admin_key(gateway: GatewayServer) -> str:
    assert gateway.settings.admin_key is not None
    return gateway.settings.admin_key


@pytest.fixture
def admin(gateway: GatewayServer, admin_key: str) -> Iterator[Tollway]:
    with Tollway(base_url=gateway.url, api_key=admin_key, max_retries=0) as client:
        yield client


@pytest.fixture(scope="session")
def provider(gateway: GatewayServer, admin_key: str, fake_upstream: FakeUpstreamThread) -> Provider:  # noqa: F811
    """One provider on the fake upstream with the models of ``MODELS``."""
    with Tollway(base_url=gateway.url, api_key=admin_key) as client:
        created = client.admin.providers.create(
            slug=f"fake-{uuid.uuid4().hex[:8]}", name="Fake", kind="openai_compatible", base_url=fake_upstream.base_url
        )
        for slug, upstream in MODELS.items():
            prices = ("0", "1000") if slug == "cent" else ("0.15", "0.6")
            client.admin.models.create(
                slug=slug,
                provider_id=created.id,
                upstream_model=upstream,
                input_price_per_mtok=prices[0],
                output_price_per_mtok=prices[1],
                max_output_tokens=10 if slug == "cent" else 1000,
            )
        return created


@dataclass
class Tenant:
    """A platform with a $10 wallet and an LLM config for ``provider``; ``client`` holds its platform key."""

    platform_id: str
    platform_key: str
    client: Tollway


@pytest.fixture
def tenant(gateway: GatewayServer, admin: Tollway, provider: Provider) -> Iterator[Tenant]:
    created = admin.admin.platforms.create(name=f"Acme {uuid.uuid4().hex[:6]}")
    client = Tollway(
        base_url=gateway.url, api_key=created.api_key.raw_key, platform_id=created.platform.id, max_retries=0
    )
    client.platform.llm_configs.create(provider_id=provider.id, api_key=FAKE_PROVIDER_KEY)
    admin.admin.platforms.topup_wallet(created.platform.id, amount_usd="10")
    yield Tenant(created.platform.id, created.api_key.raw_key, client)
    client.close()


@pytest.fixture
async def async_tenant(tenant: Tenant, gateway: GatewayServer) -> AsyncIterator[AsyncTollway]:
    async with AsyncTollway(
        base_url=gateway.url, api_key=tenant.platform_key, platform_id=tenant.platform_id, max_retries=0
    ) as client:
        yield client


def end_user_client(tenant: Tenant, external_id: str | None = None) -> tuple[str, Tollway]:
    """A new end user of ``tenant`` and a client holding its ``sk-eu_`` key."""
    created = tenant.client.platform.end_users.create(external_id=external_id or uuid.uuid4().hex)
    return created.id, tenant.client.with_options(api_key=created.api_key.raw_key)


@pytest.fixture(scope="session")
def gateway_url(gateway: GatewayServer) -> str:
    return gateway.url


@pytest.fixture
def proxy(gateway: GatewayServer) -> Iterator[FaultProxy]:
    server = FaultProxy(gateway.url)
    yield server
    server.close()


# -- which routes the SDK's tests exercised -------------------------------------------------------------------

EXERCISED: list[tuple[str, str, int]] = []  # (method, path, status) of every answer an SDK client read


@pytest.fixture(scope="session", autouse=True)
def _record_answers() -> Iterator[None]:
    """Record every answer the SDK parses (success or error), for ``test_sdk_routes.py``."""
    original = BaseClient._answer

    def answer(self: BaseClient, call: Call[Any], response: httpx.Response) -> Any:
        EXERCISED.append((response.request.method, response.request.url.path, response.status_code))
        return original(self, call, response)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_answer", answer)
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The route check runs after every other test."""
    last = [item for item in items if item.name == "test_every_management_route_is_exercised"]
    for item in last:
        items.remove(item)
        items.append(item)
