"""The access token the MCP proxy asks for (SPEC §16.2), on SQLite and PostgreSQL: an expired token is refreshed
exactly once under many concurrent requests from two instances (two services, each with its own engine and HTTP
session, on one database; the OAuth server counts the refreshes), a refused refresh marks the connection expired and
answers 409 ``mcp_app_not_connected``, and a state past its 10 minutes is refused with nothing stored.

The gateway (uvicorn) seeds the platform, the app and the connection through the API, as a user would."""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.canary import WATCH
from tests.support.oauth_server import OAuthServer
from tests.support.servers import GatewayServer
from tollway.domain.clock import utcnow
from tollway.domain.sealing import Sealer
from tollway.errors import Forbidden, InvalidRequest, McpAppNotConnected, NotFound
from tollway.providers.oauth import AuthlibOAuthClient
from tollway.services.agents.mcp_connections import McpConnections
from tollway.settings import decode_secret_key
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.mcp import McpAppStore, McpConnectionStore, prune_oauth_states
from tollway.storage.sql.tenants import PlatformStore
from tollway.workers.webhooks import webhook_session

CONCURRENT = 8  # per instance


@pytest.fixture(scope="module")
def oauth() -> Iterator[OAuthServer]:
    server = OAuthServer().start()
    yield server
    server.stop()


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture(scope="module")
def platform(gateway: GatewayServer, admin: httpx.Client, oauth: OAuthServer) -> Iterator[tuple[str, httpx.Client]]:
    created = _ok(admin.post("/v1/admin/platforms", json={"name": f"Tokens {uuid.uuid4().hex[:6]}"}), 201)
    key, platform_id = created["api_key"]["raw_key"], created["platform"]["id"]
    client = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    app = {
        "slug": "notes",
        "name": "Notes",
        "server_url": "http://127.0.0.1:9/mcp",
        "auth": {
            "type": "oauth2",
            "authorize_url": oauth.authorize_url,
            "token_url": oauth.token_url,
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret,
            "scopes": ["notes.read"],
        },
    }
    _ok(client.post(f"/v1/platforms/{platform_id}/mcp/apps", json=app), 201)
    yield platform_id, client
    client.close()


def connected_end_user(gateway: GatewayServer, platform: tuple[str, httpx.Client]) -> tuple[str, httpx.Client]:
    """A new end user who connected ``notes`` through the real flow (connect, authorize, callback)."""
    platform_id, client = platform
    created = _ok(client.post(f"/v1/platforms/{platform_id}/end-users", json={"external_id": uuid.uuid4().hex}), 201)
    end_user = httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {created['api_key']['raw_key']}"}, timeout=30
    )
    reconnect(end_user)
    return created["id"], end_user


def reconnect(end_user: httpx.Client) -> None:
    """The user connects ``notes`` as in a browser: connect, the authorization server, the callback."""
    started = _ok(end_user.post("/v1/me/mcp/apps/notes/connect"))
    callback = httpx.get(started["authorize_url"], follow_redirects=False).headers["location"]
    assert httpx.get(callback, follow_redirects=False).status_code == 200


@asynccontextmanager
async def instance(gateway: GatewayServer, clock: Any = utcnow) -> AsyncIterator[McpConnections]:
    """One more 'instance' of the connection service on the gateway's database: its own engine and HTTP session."""
    settings = gateway.settings
    assert settings.secret_key is not None
    engine = create_engine(settings)
    session = webhook_session(allow_private=True)
    sealer = Sealer(decode_secret_key(settings.secret_key))
    try:
        yield McpConnections(
            McpAppStore(engine),
            McpConnectionStore(engine),
            PlatformStore(engine),
            AuthlibOAuthClient(session),
            sealer,
            public_url=settings.public_base_url,
            clock=clock,
        )
    finally:
        await session.close()
        await engine.dispose()


def _status(platform: tuple[str, httpx.Client], end_user_id: str) -> str:
    platform_id, client = platform
    listed = _ok(client.get(f"/v1/platforms/{platform_id}/mcp/connections", params={"end_user_id": end_user_id}))
    assert listed["total"] == 1
    return str(listed["data"][0]["status"])


async def test_expired_token_is_refreshed_once_under_concurrent_requests_across_instances(
    gateway: GatewayServer, platform: tuple[str, httpx.Client], oauth: OAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    oauth.access_ttl_s = 5  # inside the refresh margin: due at once
    try:
        end_user_id, end_user = connected_end_user(gateway, platform)
    finally:
        oauth.access_ttl_s = 3600
    first_access = oauth.issued[-2]
    refreshes = oauth.refreshes
    oauth.refresh_delay_s = 0.3  # every waiter arrives while the one refresh is in flight
    try:
        async with instance(gateway) as one, instance(gateway) as two:
            calls = [
                svc.access_token(platform[0], end_user_id, "notes") for svc in (one, two) for _ in range(CONCURRENT)
            ]
            tokens = await asyncio.gather(*calls)
            assert oauth.refreshes == refreshes + 1
            assert len(set(tokens)) == 1
            (token,) = set(tokens)
            assert token != first_access and token == oauth.issued[-2] and oauth.is_valid(token)
            # Fresh now: further calls use it without refreshing.
            assert await one.access_token(platform[0], end_user_id, "notes") == token
            assert oauth.refreshes == refreshes + 1
    finally:
        oauth.refresh_delay_s = 0.0
    assert _status(platform, end_user_id) == "connected"
    for token in (*oauth.issued, oauth.client_secret):
        assert token not in caplog.text
    end_user.close()


async def test_a_token_the_server_rejected_is_refreshed_once(
    gateway: GatewayServer, platform: tuple[str, httpx.Client], oauth: OAuthServer
) -> None:
    end_user_id, end_user = connected_end_user(gateway, platform)
    refreshes = oauth.refreshes
    async with instance(gateway) as one, instance(gateway) as two:
        current = await one.access_token(platform[0], end_user_id, "notes")
        assert oauth.refreshes == refreshes  # valid for an hour: no refresh
        calls = [
            svc.access_token(platform[0], end_user_id, "notes", rejected=current)
            for svc in (one, two)
            for _ in range(4)
        ]
        fresh = set(await asyncio.gather(*calls))
        assert oauth.refreshes == refreshes + 1 and len(fresh) == 1 and current not in fresh
        headers = await two.auth_headers(platform[0], end_user_id, "notes")
        assert headers == {"Authorization": "Bearer " + fresh.pop()}
        with pytest.raises(Forbidden):
            await two.auth_headers(platform[0], None, "notes")  # platform keys use only none and header apps
    end_user.close()


async def test_shared_header_and_no_auth_apps(
    gateway: GatewayServer, platform: tuple[str, httpx.Client], oauth: OAuthServer
) -> None:
    platform_id, client = platform
    value = "Bearer shared-" + uuid.uuid4().hex
    WATCH.remember(value.split()[1])
    base = {"server_url": "http://127.0.0.1:9/mcp"}
    header = {"slug": "shared", "name": "Shared", "auth": {"type": "header", "name": "X-Api-Key", "value": value}}
    _ok(client.post(f"/v1/platforms/{platform_id}/mcp/apps", json={**base, **header}), 201)
    public = {"slug": "public", "name": "Public", "auth": {"type": "none"}}
    _ok(client.post(f"/v1/platforms/{platform_id}/mcp/apps", json={**base, **public}), 201)
    async with instance(gateway) as svc:
        assert await svc.auth_headers(platform_id, None, "shared") == {"X-Api-Key": value}
        assert await svc.auth_headers(platform_id, None, "public") == {}
        with pytest.raises(NotFound):
            await svc.auth_headers(platform_id, None, "missing")
        with pytest.raises(InvalidRequest):
            await svc.access_token(platform_id, str(uuid.uuid4()), "shared")


async def test_token_without_expiry_is_used_as_is(
    gateway: GatewayServer, platform: tuple[str, httpx.Client], oauth: OAuthServer
) -> None:
    oauth.access_ttl_s = None
    try:
        end_user_id, end_user = connected_end_user(gateway, platform)
    finally:
        oauth.access_ttl_s = 3600
    refreshes = oauth.refreshes
    async with instance(gateway) as svc:
        assert await svc.access_token(platform[0], end_user_id, "notes") == oauth.issued[-2]
    assert oauth.refreshes == refreshes
    end_user.close()


async def test_refused_refresh_expires_the_connection_and_answers_409(
    gateway: GatewayServer, platform: tuple[str, httpx.Client], oauth: OAuthServer
) -> None:
    oauth.access_ttl_s = 5
    try:
        end_user_id, end_user = connected_end_user(gateway, platform)
    finally:
        oauth.access_ttl_s = 3600
    oauth.refuse_refresh = True
    refreshes = oauth.refreshes
    try:
        async with instance(gateway) as one, instance(gateway) as two:
            calls = [svc.access_token(platform[0], end_user_id, "notes") for svc in (one, two) for _ in range(3)]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(o, McpAppNotConnected) for o in outcomes), outcomes
            assert oauth.refreshes == refreshes + 1  # one attempt; the others saw the connection expire
            error = outcomes[0]
            assert isinstance(error, McpAppNotConnected)
            assert (error.status, error.code) == (409, "mcp_app_not_connected")
            assert "notes" in error.message and "/v1/me/mcp-config" in error.message
            with pytest.raises(McpAppNotConnected):
                await one.access_token(platform[0], end_user_id, "notes")
            assert oauth.refreshes == refreshes + 1
    finally:
        oauth.refuse_refresh = False
    assert _status(platform, end_user_id) == "expired"
    entry = next(a for a in _ok(end_user.get("/v1/me/mcp-config"))["apps"] if a["slug"] == "notes")
    assert entry["connected"] is False
    reconnect(end_user)  # connecting again heals it
    assert _status(platform, end_user_id) == "connected"
    end_user.close()


async def test_unconnected_end_user_gets_409(
    gateway: GatewayServer, platform: tuple[str, httpx.Client], oauth: OAuthServer
) -> None:
    platform_id, client = platform
    created = _ok(client.post(f"/v1/platforms/{platform_id}/end-users", json={"external_id": uuid.uuid4().hex}), 201)
    async with instance(gateway) as svc:
        with pytest.raises(McpAppNotConnected):
            await svc.access_token(platform_id, created["id"], "notes")


async def test_state_past_ten_minutes_is_refused_and_nothing_is_stored(
    gateway: GatewayServer, platform: tuple[str, httpx.Client], oauth: OAuthServer
) -> None:
    platform_id, client = platform
    created = _ok(client.post(f"/v1/platforms/{platform_id}/end-users", json={"external_id": uuid.uuid4().hex}), 201)
    end_user_id = created["id"]

    def later() -> datetime:
        return utcnow() + timedelta(minutes=10, seconds=1)

    async with instance(gateway) as now_svc, instance(gateway, clock=later) as later_svc:
        started = await now_svc.connect(platform_id, end_user_id, "notes", {})
        assert timedelta(minutes=9) < started.expires_at - utcnow() <= timedelta(minutes=10)
        async with httpx.AsyncClient() as browser:
            location = (await browser.get(started.authorize_url, follow_redirects=False)).headers["location"]
        query = parse_qs(urlsplit(location).query)
        exchanges = oauth.exchanges
        with pytest.raises(InvalidRequest) as refused:
            await later_svc.callback(query["code"][0], query["state"][0], None)
        assert refused.value.param == "state"
        assert oauth.exchanges == exchanges
        # The state is spent too: the real clock cannot use it any more.
        with pytest.raises(InvalidRequest):
            await now_svc.callback(query["code"][0], query["state"][0], None)
    listed = _ok(client.get(f"/v1/platforms/{platform_id}/mcp/connections", params={"end_user_id": end_user_id}))
    assert listed["total"] == 0


async def test_unused_states_are_pruned_after_ten_minutes(
    gateway: GatewayServer, platform: tuple[str, httpx.Client], oauth: OAuthServer
) -> None:
    platform_id, client = platform
    created = _ok(client.post(f"/v1/platforms/{platform_id}/end-users", json={"external_id": uuid.uuid4().hex}), 201)
    engine = create_engine(gateway.settings)
    try:
        async with instance(gateway) as svc:
            started = await svc.connect(platform_id, created["id"], "notes", {})
            assert await prune_oauth_states(engine, utcnow()) == 0  # still valid: kept
            assert await prune_oauth_states(engine, started.expires_at) >= 1
            async with httpx.AsyncClient() as browser:
                location = (await browser.get(started.authorize_url, follow_redirects=False)).headers["location"]
            query = parse_qs(urlsplit(location).query)
            with pytest.raises(InvalidRequest):
                await svc.callback(query["code"][0], query["state"][0], None)
    finally:
        await engine.dispose()


def test_stored_tokens_are_sealed(
    gateway: GatewayServer, platform: tuple[str, httpx.Client], oauth: OAuthServer
) -> None:
    """The database holds no token in clear: neither the access nor the refresh token's bytes are in any row."""
    import sqlalchemy as sa

    end_user_id, end_user = connected_end_user(gateway, platform)
    access, refresh = oauth.issued[-2:]

    async def rows() -> list[Any]:
        engine = create_engine(gateway.settings)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(sa.text("SELECT * FROM mcp_connections"))).all())
        finally:
            await engine.dispose()

    dump = repr(asyncio.run(rows()))
    for token in (access, refresh, oauth.client_secret):
        assert token not in dump and base64.b64encode(token.encode()).decode() not in dump
    assert end_user_id in dump
    end_user.close()
