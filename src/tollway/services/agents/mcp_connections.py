"""End users' OAuth 2.1 connections to MCP apps (SPEC §16.2): connect (a single-use state bound to the end user and
app, the PKCE verifier sealed beside its digest), the callback's code exchange, the end user's MCP configuration,
disconnection with revocation, and ``access_token``: what the MCP proxy (§16.3) calls for a valid token, refreshing
an expired one exactly once across instances (a lease claimed by a conditional UPDATE; the others wait and read the
new token). A refused refresh marks the connection ``expired`` and answers 409 ``mcp_app_not_connected``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from tollway.domain.bodies import Body, Field, Text
from tollway.domain.clock import as_utc, utcnow
from tollway.domain.ids import new_id
from tollway.domain.mcp import (
    APP_SLUG,
    REFRESH_LEASE,
    STATE_TTL,
    AuthType,
    ConnectionStatus,
    OAuthApp,
    OAuthRefused,
    OAuthUnreachable,
    TokenSet,
    app_secret_context,
    connection_context,
    new_code_verifier,
    new_state,
    origin_of,
    refresh_due,
    state_context,
    state_digest,
)
from tollway.domain.platform_settings import PlatformSettings
from tollway.domain.ports.management import PlatformRepository
from tollway.domain.ports.mcp import McpAppRepository, McpConnectionRepository, OAuthClient
from tollway.domain.records import Record
from tollway.domain.sealing import Sealer, SealError
from tollway.errors import (
    Forbidden,
    InvalidRequest,
    McpAppNotConnected,
    NotFound,
    ServiceUnavailable,
    UpstreamError,
)
from tollway.services.freshness import RefreshAhead

log = logging.getLogger("tollway.mcp")

CALLBACK_PATH: Final = "/v1/mcp/oauth/callback"
CONNECT_BODY: Final = Body(
    Field(
        "redirect_uri",
        Text(2048, format="uri"),
        nullable=True,
        description="Where to send the browser afterwards; its origin must be in mcp_redirect_origins.",
    )
)
_POLL_S: Final = 0.05
APP_CACHE_S: Final = 0.9  # the propagation bound of SPEC §2.2, as services/inference/routing.py
APP_REFRESH_AFTER_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class Authorization:
    authorize_url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class CallbackOutcome:
    """Where the callback sends the browser: ``redirect_uri`` (None: answer a page) with the app and status."""

    app_slug: str
    redirect_uri: str | None
    error: str | None  # None: connected


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    app: Record
    connected: bool
    connected_at: datetime | None


class McpConnections:
    def __init__(
        self,
        apps: McpAppRepository,
        connections: McpConnectionRepository,
        platforms: PlatformRepository,
        oauth: OAuthClient,
        sealer: Sealer,
        *,
        public_url: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._apps = apps
        self._connections = connections
        self._platforms = platforms
        self._oauth = oauth
        self._sealer = sealer
        self._public_url = public_url.rstrip("/")
        self._now = clock
        # The proxy reads the app on every request: cached like the router's catalog (≤ 1 s across instances,
        # at once on this one through ``invalidate``).
        self._active: RefreshAhead[tuple[str, str], Record | None] = RefreshAhead(
            self._load_active, max_age_s=APP_CACHE_S, refresh_after_s=APP_REFRESH_AFTER_S
        )

    def invalidate(self) -> None:
        self._active.invalidate()

    @property
    def callback_url(self) -> str:
        return self._public_url + CALLBACK_PATH

    def proxy_url(self, slug: str) -> str:
        return f"{self._public_url}/v1/mcp/{slug}"

    # -- connect and callback -------------------------------------------------------------------------------------

    async def connect(
        self, platform_id: str, end_user_id: str, slug: str, body: Mapping[str, Any], *, return_to: str | None = None
    ) -> Authorization:
        """``body`` is the API's ``{redirect_uri?}`` (its origin must be in ``mcp_redirect_origins``). ``return_to``
        is a path of this gateway's own, under ``TOLLWAY_PUBLIC_URL``, that the console chooses (never the caller's
        input): the browser comes back there after the callback, whatever the platform's origins."""
        CONNECT_BODY.check(body)
        app = await self.active_app(platform_id, slug)
        if app["auth_type"] != AuthType.OAUTH2.value:
            raise InvalidRequest(f"The MCP app '{slug}' does not use OAuth; it needs no connection.", None)
        if return_to is not None:
            assert return_to.startswith("/") and not return_to.startswith("//")  # a path of ours, set in code
            redirect_uri: str | None = self._public_url + return_to
        else:
            redirect_uri = await self._redirect_uri(platform_id, CONNECT_BODY.read(body, "redirect_uri"))
        state, verifier, now = new_state(), new_code_verifier(), self._now()
        digest = state_digest(state)
        expires_at = now + STATE_TTL
        await self._connections.save_state(
            {
                "state_digest": digest,
                "platform_id": platform_id,
                "app_id": app["id"],
                "end_user_id": end_user_id,
                "verifier_sealed": self._sealer.seal(verifier, state_context(platform_id, digest)),
                "redirect_uri": redirect_uri,
                "expires_at": expires_at,
                "created_at": now,
            }
        )
        url = self._oauth.authorize_url(self._oauth_app(app), self.callback_url, state, verifier)
        return Authorization(url, expires_at)

    async def _redirect_uri(self, platform_id: str, uri: str | None) -> str | None:
        if uri is None:
            return None
        origin = origin_of(uri)
        if origin is None or "#" in uri:
            raise InvalidRequest("redirect_uri must be an absolute http(s) URL without a fragment.", "redirect_uri")
        platform = await self._platforms.get(platform_id)
        allowed = PlatformSettings.from_stored(platform["settings"] if platform else None).mcp_redirect_origins
        if origin not in allowed:
            raise InvalidRequest(
                "redirect_uri must have an origin listed in the platform setting mcp_redirect_origins.", "redirect_uri"
            )
        return uri

    async def callback(self, code: str | None, state: str | None, error: str | None) -> CallbackOutcome:
        """Consumes the state first (single use: a second callback with it is a 400 whatever happens next)."""
        if not state:
            raise InvalidRequest("state is required.", "state")
        digest = state_digest(state)
        pending = await self._connections.take_state(digest)
        if pending is None or as_utc(pending["expires_at"]) <= self._now():
            raise InvalidRequest("state is unknown, already used or expired; start the connection again.", "state")
        platform_id, end_user_id = pending["platform_id"], pending["end_user_id"]
        app = await self._apps.get(platform_id, pending["app_id"])
        redirect_uri = pending["redirect_uri"]
        if app is None or not app["is_active"] or app["auth_type"] != AuthType.OAUTH2.value:
            return CallbackOutcome(app["slug"] if app else "", redirect_uri, "app_unavailable")
        slug = app["slug"]
        if error is not None or not code:
            return CallbackOutcome(slug, redirect_uri, "access_denied" if error == "access_denied" else "oauth_error")
        try:
            verifier = self._sealer.open(pending["verifier_sealed"], state_context(platform_id, digest))
            tokens = await self._oauth.exchange(self._oauth_app(app), code, self.callback_url, verifier)
        except OAuthRefused as exc:
            return CallbackOutcome(slug, redirect_uri, exc.code)
        except OAuthUnreachable:
            return CallbackOutcome(slug, redirect_uri, "temporarily_unavailable")
        except SealError:
            log.error("a pending MCP OAuth state does not open under the secret key")
            return CallbackOutcome(slug, redirect_uri, "server_error")
        now = self._now()
        await self._connections.store(
            {
                "id": new_id(),
                "platform_id": platform_id,
                "app_id": app["id"],
                "end_user_id": end_user_id,
                "status": ConnectionStatus.CONNECTED.value,
                **self._sealed_tokens(tokens, platform_id, app["id"], end_user_id),
                "version": 0,
                "refresh_lease_until": None,
                "connected_at": now,
                "updated_at": now,
            }
        )
        return CallbackOutcome(slug, redirect_uri, None)

    # -- the end user's view ----------------------------------------------------------------------------------------

    async def config(self, platform_id: str, end_user_id: str) -> list[ConfigEntry]:
        """Every active app; ``none`` and ``header`` apps need no connection and count as connected."""
        apps = await self._apps.active_apps(platform_id)
        rows = {row["app_id"]: row for row in await self._connections.of_end_user(platform_id, end_user_id)}
        entries = []
        for app in apps:
            if app["auth_type"] != AuthType.OAUTH2.value:
                entries.append(ConfigEntry(app, True, None))
                continue
            row = rows.get(app["id"])
            live = row is not None and row["status"] == ConnectionStatus.CONNECTED.value
            entries.append(ConfigEntry(app, live, row["connected_at"] if live and row else None))
        return entries

    async def disconnect(self, platform_id: str, end_user_id: str, slug: str) -> None:
        """Deletes the tokens, then revokes them at the app's ``revocation_url`` (a failure there is logged)."""
        app = await self._apps.by_slug(platform_id, slug) if APP_SLUG.fullmatch(slug) else None
        if app is None:
            raise NotFound("No MCP app with this slug.")
        row = await self._connections.delete(platform_id, app["id"], end_user_id)
        if row is None:
            raise NotFound(f"The MCP app '{slug}' is not connected.")
        if app["auth_type"] != AuthType.OAUTH2.value or not app["auth_config"].get("revocation_url"):
            return
        context = connection_context(platform_id, app["id"], end_user_id)
        try:
            oauth_app = self._oauth_app(app)
            if row["refresh_token_sealed"] is not None:
                refresh = self._sealer.open(row["refresh_token_sealed"], context)
                await self._oauth.revoke(oauth_app, refresh, "refresh_token")
            await self._oauth.revoke(oauth_app, self._sealer.open(row["access_token_sealed"], context), "access_token")
        except (OAuthUnreachable, OAuthRefused, SealError):
            log.warning("MCP tokens were deleted but could not be revoked at the app's server")

    # -- the proxy's token ------------------------------------------------------------------------------------------

    async def auth_headers(self, platform_id: str, end_user_id: str | None, slug: str) -> dict[str, str]:
        """The headers a call to the app's server carries for this caller: none, the shared header, or the end
        user's bearer token (platform keys, ``end_user_id`` None, may use only ``none`` and ``header`` apps)."""
        app = await self.active_app(platform_id, slug)
        kind = AuthType(app["auth_type"])
        if kind is AuthType.NONE:
            return {}
        if kind is AuthType.HEADER:
            value = self._open(app["secret_sealed"], app_secret_context(platform_id, app["id"]), slug)
            return {app["auth_config"]["name"]: value}
        if end_user_id is None:
            raise Forbidden(f"The MCP app '{slug}' uses end users' OAuth connections; call it with an end-user key.")
        return {"Authorization": "Bearer " + await self.access_token(platform_id, end_user_id, slug)}

    async def access_token(self, platform_id: str, end_user_id: str, slug: str, *, rejected: str | None = None) -> str:
        """A valid access token of the end user's connection to the (OAuth) app; an expired one is refreshed first,
        once across instances. ``rejected``: a token the app's server just refused (HTTP 401); it is refreshed as if
        expired, unless another caller already replaced it. 409 ``mcp_app_not_connected`` without a usable
        connection."""
        app = await self.active_app(platform_id, slug)
        if app["auth_type"] != AuthType.OAUTH2.value:
            raise InvalidRequest(f"The MCP app '{slug}' does not use OAuth connections.", None)
        context = connection_context(platform_id, app["id"], end_user_id)
        deadline = asyncio.get_running_loop().time() + 2 * REFRESH_LEASE.total_seconds()
        while True:
            row = await self._connections.get(platform_id, app["id"], end_user_id)
            if row is None or row["status"] != ConnectionStatus.CONNECTED.value:
                raise McpAppNotConnected(slug)
            now = self._now()
            expires_at = row["access_expires_at"]
            if not refresh_due(None if expires_at is None else as_utc(expires_at), now):
                token = self._open(row["access_token_sealed"], context, slug)
                if rejected is None or token != rejected:
                    return token
            lease_until = now + REFRESH_LEASE
            if await self._connections.claim_refresh(row["id"], row["version"], now, lease_until):
                return await self._refresh(app, row, lease_until, context)
            if asyncio.get_running_loop().time() > deadline:
                raise ServiceUnavailable(f"The token of MCP app '{slug}' is being refreshed; try again.")
            await asyncio.sleep(_POLL_S)  # another caller refreshes: read its token once it is stored

    async def _refresh(self, app: Record, row: Record, lease_until: datetime, context: str) -> str:
        slug = app["slug"]
        try:
            if row["refresh_token_sealed"] is None:
                raise OAuthRefused("no_refresh_token")
            refresh = self._open(row["refresh_token_sealed"], context, slug)
            tokens = await self._oauth.refresh(self._oauth_app(app), refresh)
        except OAuthRefused:
            await self._connections.expire(row["id"], row["version"], self._now())
            raise McpAppNotConnected(slug) from None
        except OAuthUnreachable:
            await self._connections.release_refresh(row["id"], lease_until)
            raise UpstreamError(f"The authorization server of MCP app '{slug}' could not be reached.") from None
        except BaseException:
            await asyncio.shield(self._connections.release_refresh(row["id"], lease_until))
            raise
        values = self._sealed_tokens(tokens, app["platform_id"], app["id"], row["end_user_id"])
        await self._connections.finish_refresh(row["id"], row["version"], values, self._now())
        return tokens.access_token

    # -- helpers --------------------------------------------------------------------------------------------------

    async def active_app(self, platform_id: str, slug: str) -> Record:
        """The platform's active app with this slug (404 otherwise), for the proxy: server, price, allowed tools."""
        app = await self._active.get((platform_id, slug)) if APP_SLUG.fullmatch(slug) else None
        if app is None or not app["is_active"]:
            raise NotFound("No active MCP app with this slug.")
        return app

    async def _load_active(self, key: tuple[str, str]) -> Record | None:
        return await self._apps.by_slug(*key)

    async def app_by_url(self, platform_id: str, url: str) -> Record | None:
        """The platform's active app that ``url`` names: its proxy URL ``{public_url}/v1/mcp/{slug}`` or its own
        server URL (trailing slashes ignored); None when it names none (an external server, SPEC §16.3)."""
        wanted = url.rstrip("/")
        for app in await self._apps.active_apps(platform_id):
            if wanted in (self.proxy_url(app["slug"]), str(app["server_url"]).rstrip("/")):
                return app
        return None

    def _oauth_app(self, app: Record) -> OAuthApp:
        config = app["auth_config"]
        secret = self._sealer.open(app["secret_sealed"], app_secret_context(app["platform_id"], app["id"]))
        return OAuthApp(
            authorize_url=config["authorize_url"],
            token_url=config["token_url"],
            client_id=config["client_id"],
            client_secret=secret,
            scopes=tuple(config.get("scopes") or ()),
            revocation_url=config.get("revocation_url"),
        )

    def _open(self, sealed: bytes, context: str, slug: str) -> str:
        try:
            return self._sealer.open(sealed, context)
        except SealError:
            log.error("an MCP connection's tokens do not open under the secret key")
            raise McpAppNotConnected(slug) from None

    def _sealed_tokens(self, tokens: TokenSet, platform_id: str, app_id: str, end_user_id: str) -> dict[str, Any]:
        context = connection_context(platform_id, app_id, end_user_id)
        refresh = tokens.refresh_token
        return {
            "access_token_sealed": self._sealer.seal(tokens.access_token, context),
            "refresh_token_sealed": None if refresh is None else self._sealer.seal(refresh, context),
            "access_expires_at": tokens.expires_at,
            "scopes": list(tokens.scopes),
        }
