"""Webhook endpoints and deliveries (SPEC §5.8, §11) and MCP apps with end users' OAuth connections (§16.1, §16.2)
through the SDK, against a live Tollway, a real webhook receiver and a real OAuth 2.1 authorization server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from conftest import Tenant, end_user_client
from tollway_sdk import InvalidRequestError, ObjectNotFoundError
from tollway_sdk.types import CreatedWebhookEndpoint, MCPApp, WebhookDelivery

from tests.support.oauth_server import OAuthServer
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oauth() -> Iterator[OAuthServer]:
    server = OAuthServer().start()
    yield server
    server.stop()


def _delivered(tenant: Tenant, endpoint_id: str, count: int) -> list[WebhookDelivery]:
    deadline = time.monotonic() + 20
    while True:
        done = list(tenant.client.platform.webhooks.list_deliveries(endpoint_id, status="succeeded"))
        if len(done) >= count or time.monotonic() > deadline:
            return done
        time.sleep(0.1)


def test_webhook_endpoints_deliveries_and_replay(tenant: Tenant, receiver: WebhookReceiver) -> None:
    hooks = tenant.client.platform.webhooks
    created = hooks.create(url=receiver.url, events=["budget.topped_up"], description="ledger sync")
    assert isinstance(created, CreatedWebhookEndpoint) and created.secret.startswith("whsec_")
    assert (created.events, created.is_active, created.disabled_reason) == (["budget.topped_up"], True, None)
    fetched = hooks.retrieve(created.id)
    assert fetched.id == created.id and "secret" not in fetched.model_dump()
    assert [e.id for e in hooks.list()] == [created.id]
    patched = hooks.update(created.id, description=None, events=["budget.topped_up", "budget.debited"])
    assert patched.description is None and patched.events == ["budget.topped_up", "budget.debited"]
    rotation = hooks.rotate_secret(created.id)
    assert rotation.secret.startswith("whsec_") and rotation.secret != created.secret
    assert rotation.previous_secret_expires_at.tzinfo is not None

    end_user_id, _ = end_user_client(tenant)
    tenant.client.platform.budgets.create(end_user_id, max_usd="1")
    tenant.client.platform.budgets.topup(end_user_id, amount_usd="0.5")
    delivered = _delivered(tenant, created.id, 1)
    assert len(delivered) == 1 and delivered[0].event_type == "budget.topped_up"
    assert delivered[0].attempts[0].response_status == 200 and delivered[0].next_attempt_at is None
    replay = hooks.replay_delivery(created.id, delivered[0].id)
    assert replay.id != delivered[0].id and replay.webhook_id == delivered[0].webhook_id
    assert len(_delivered(tenant, created.id, 2)) == 2
    received = receiver.wait_for(lambda got: len(got) >= 2)
    assert received[0].headers["webhook-id"] == received[1].headers["webhook-id"] == replay.webhook_id
    assert list(hooks.list_deliveries(created.id, status="failed")) == []

    hooks.delete(created.id)
    with pytest.raises(ObjectNotFoundError):
        hooks.retrieve(created.id)
    with pytest.raises(InvalidRequestError) as caught:
        hooks.create(url="ftp://example.com/hook")
    assert caught.value.param == "url"


def _oauth_auth(oauth: OAuthServer) -> dict[str, object]:
    return {
        "type": "oauth2",
        "authorize_url": oauth.authorize_url,
        "token_url": oauth.token_url,
        "client_id": oauth.client_id,
        "client_secret": oauth.client_secret,
        "scopes": ["notes.read"],
        "revocation_url": oauth.revocation_url,
    }


def test_mcp_apps_and_connections(tenant: Tenant, oauth: OAuthServer) -> None:
    tenant.client.platform.update(settings={"mcp_redirect_origins": [oauth.url]})
    apps = tenant.client.platform.mcp_apps
    app = apps.create(
        slug="notes",
        name="Notes",
        server_url="http://127.0.0.1:9/mcp",
        auth=_oauth_auth(oauth),  # type: ignore[arg-type]
        price_per_call_usd="0.002",
        allowed_tools=["search"],
    )
    assert isinstance(app, MCPApp)
    assert app.has_secret is True and app.auth.type == "oauth2" and "client_secret" not in app.auth.model_dump()
    assert app.price_per_call_usd == Decimal("0.002")
    assert app.allowed_tools == ["search"]
    assert apps.retrieve(app.id) == app
    assert [a.id for a in apps.list()] == [app.id]
    patched = apps.update(app.id, name="Team notes", allowed_tools=None)
    assert (patched.name, patched.allowed_tools, patched.has_secret) == ("Team notes", None, True)

    end_user_id, user = end_user_client(tenant)
    config = user.me.mcp.config()
    assert [(a.slug, a.connected, a.auth) for a in config.apps] == [("notes", False, "oauth2")]
    assert config.apps[0].server_url.endswith("/v1/mcp/notes")
    started = user.me.mcp.connect("notes", redirect_uri=oauth.url + "/done")
    assert started.authorize_url.startswith(oauth.authorize_url + "?") and started.expires_at.tzinfo is not None
    approved = httpx.get(started.authorize_url, follow_redirects=False)
    assert approved.status_code == 302
    callback = httpx.get(approved.headers["location"], follow_redirects=False)
    assert callback.status_code in (302, 303, 307) and "status=connected" in callback.headers["location"]
    connections = list(apps.list_connections(end_user_id=end_user_id))
    assert [(c.app_slug, c.status, c.scopes) for c in connections] == [("notes", "connected", ["notes.read"])]
    assert user.me.mcp.config().apps[0].connected is True
    user.me.mcp.disconnect("notes")
    assert user.me.mcp.config().apps[0].connected is False
    assert list(apps.list_connections(end_user_id=end_user_id)) == []
    with pytest.raises(InvalidRequestError) as caught:
        user.me.mcp.connect("notes", redirect_uri="https://evil.example/steal")
    assert caught.value.param == "redirect_uri"
    apps.delete(app.id)
    with pytest.raises(ObjectNotFoundError):
        apps.retrieve(app.id)
