"""End-to-end fixtures: a tenant wired to the fake upstream, the official openai SDK as the client, and for the MCP
modules a real MCP app (open, or checking tokens of the real OAuth 2.1 test server)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.mcp_app import McpApp
from tests.support.oauth_server import OAuthServer
from tests.support.seed import Tenant, create_model, create_provider, create_tenant
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

# slug -> upstream model name (the fake upstream's behaviour is chosen by that name)
MODELS = {
    "chat": "fake/default",
    "echo": "fake/echo",
    "usage": "fake/usage?in=5&out=6",
    "slow-usage": "fake/usage?in=5&out=6&ms=700",
    "cached": "fake/usage?in=1200&out=300&cached=200",
    "no-usage": "fake/echo?no_usage=1",
    "cut": "fake/stream-cut?after=3",
    "tool": 'fake/tool-call?name=get_weather&args={"city":"Paris"}',
    "rate-limited": "fake/error?status=429",
    "bad-request": "fake/error?status=400",
    "broken": "fake/garbage",
}


@pytest.fixture(scope="module")
def tenant(admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread) -> Iterator[Tenant]:
    provider = create_provider(admin, fake_upstream.base_url)
    for slug, upstream in MODELS.items():
        extra = {"cached_input_price_per_mtok": "0.075"} if slug == "cached" else {}
        create_model(admin, provider["id"], slug, upstream, **extra)
    tenant = create_tenant(admin, gateway.url, provider["id"], provider["slug"])
    yield tenant
    tenant.client.close()


@pytest.fixture
def sdk(gateway: GatewayServer, tenant: Tenant) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=tenant.platform_key, max_retries=0, timeout=30)
    yield client
    client.close()


@pytest.fixture(scope="module")
def oauth() -> Iterator[OAuthServer]:
    server = OAuthServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app() -> Iterator[McpApp]:
    server = McpApp().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oauth_app(oauth: OAuthServer) -> Iterator[McpApp]:
    server = McpApp(token_check=oauth.is_valid).start()
    yield server
    server.stop()
