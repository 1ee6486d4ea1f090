"""The OAuth 2.1 client of MCP apps' authorization servers (SPEC §16.2), built on authlib's transport-neutral
``OAuth2Client``: authlib builds the authorize URL with the PKCE S256 challenge, the token, refresh and revocation
requests and the client authentication (``client_secret_basic``), and parses token responses; this module only moves
those requests over Tollway's aiohttp session (its connector refuses non-public addresses unless private URLs are
allowed, §11.5; redirects are never followed) and maps failures to ``OAuthRefused`` / ``OAuthUnreachable``.

Tokens never reach a log line or an exception message.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

import aiohttp
import orjson
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.client import OAuth2Client

from tollway.domain.clock import utcnow
from tollway.domain.mcp import OAuthApp, OAuthRefused, OAuthUnreachable, TokenSet, granted_scopes, token_expiry

log = logging.getLogger("tollway.mcp.oauth")

MAX_RESPONSE_BYTES: Final = 65_536
_ERROR_CODE: Final = re.compile(r"[a-z0-9_]{1,64}")


class _HttpStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class _Response:
    """The three things authlib's token parser reads of a response."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self._body = body

    def json(self) -> Any:
        return orjson.loads(self._body)  # orjson.JSONDecodeError is a ValueError, as authlib expects

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise _HttpStatus(self.status_code)


class _AiohttpClient(OAuth2Client):  # type: ignore[misc]  # authlib ships no type information
    """authlib's OAuth 2 client with its three transport hooks made coroutines over aiohttp."""

    async def _fetch_token(
        self, url: str, body: str = "", headers: Any = None, auth: Any = None, method: str = "POST", **_: Any
    ) -> Any:
        return self.parse_response_token(await self._post(url, body, headers, auth))

    async def _refresh_token(
        self,
        url: str,
        refresh_token: str | None = None,
        body: str = "",
        headers: Any = None,
        auth: Any = None,
        **_: Any,
    ) -> Any:
        return self.parse_response_token(await self._post(url, body, headers, auth))

    def _http_post(self, url: str, body: str | None = None, auth: Any = None, headers: Any = None, **_: Any) -> Any:
        return self._post(url, body or "", headers, auth)  # revocation; awaited by the caller

    async def _post(self, url: str, body: str, headers: Any, auth: Any) -> _Response:
        # A copy: authlib passes its module-level default headers, and client authentication adds to them.
        headers = dict(headers or {})
        url, headers, body = auth.prepare("POST", url, headers, body)
        session: aiohttp.ClientSession = self.session
        async with session.post(url, data=body.encode(), headers=headers, allow_redirects=False) as response:
            raw = await response.content.read(MAX_RESPONSE_BYTES + 1)
            if len(raw) > MAX_RESPONSE_BYTES:
                raise OAuthUnreachable("the authorization server's answer is too large")
            return _Response(response.status, raw)


def _code(text: object) -> str:
    """An OAuth error code as it may travel in a redirect: ``[a-z0-9_]``, else ``oauth_error``."""
    return text if isinstance(text, str) and _ERROR_CODE.fullmatch(text) else "oauth_error"


class AuthlibOAuthClient:
    """Implements ``domain.ports.mcp.OAuthClient``."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    def _client(self, app: OAuthApp, **extra: Any) -> _AiohttpClient:
        return _AiohttpClient(
            self._session,
            client_id=app.client_id,
            client_secret=app.client_secret,
            token_endpoint_auth_method="client_secret_basic",
            revocation_endpoint_auth_method="client_secret_basic",
            code_challenge_method="S256",
            **extra,
        )

    def authorize_url(self, app: OAuthApp, redirect_uri: str, state: str, code_verifier: str) -> str:
        client = self._client(app, scope=" ".join(app.scopes) or None, redirect_uri=redirect_uri)
        url, _ = client.create_authorization_url(app.authorize_url, state=state, code_verifier=code_verifier)
        return str(url)

    async def exchange(self, app: OAuthApp, code: str, redirect_uri: str, code_verifier: str) -> TokenSet:
        client = self._client(app, redirect_uri=redirect_uri)
        token = await self._call(
            "token exchange",
            client.fetch_token(
                app.token_url,
                grant_type="authorization_code",
                code=code,
                redirect_uri=redirect_uri,
                code_verifier=code_verifier,
            ),
        )
        return self._token_set(token, app, None)

    async def refresh(self, app: OAuthApp, refresh_token: str) -> TokenSet:
        token = await self._call("refresh", self._client(app).refresh_token(app.token_url, refresh_token=refresh_token))
        return self._token_set(token, app, refresh_token)

    async def revoke(self, app: OAuthApp, token: str, token_type_hint: str) -> None:
        if app.revocation_url is None:
            return
        client = self._client(app)
        try:
            response = await client.revoke_token(app.revocation_url, token=token, token_type_hint=token_type_hint)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("MCP token revocation failed: %s", type(exc).__name__)
            raise OAuthUnreachable("the revocation endpoint could not be reached") from None
        if response.status_code >= 400:
            log.warning("MCP token revocation answered HTTP %d", response.status_code)
            raise OAuthUnreachable(f"the revocation endpoint answered HTTP {response.status_code}")

    @staticmethod
    async def _call(what: str, pending: Any) -> Any:
        try:
            token = await pending
        except OAuth2Error as exc:
            code = _code(getattr(exc, "error", None))
            log.info("MCP OAuth %s refused: %s", what, code)
            raise OAuthRefused(code) from None
        except _HttpStatus as exc:
            log.warning("MCP OAuth %s answered HTTP %d", what, exc.status)
            if exc.status == 429 or exc.status >= 500:
                raise OAuthUnreachable(f"the token endpoint answered HTTP {exc.status}") from None
            raise OAuthRefused("invalid_grant") from None
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            log.warning("MCP OAuth %s failed: %s", what, type(exc).__name__)
            raise OAuthUnreachable("the token endpoint could not be used") from None
        if not isinstance(token, dict) or not isinstance(token.get("access_token"), str) or not token["access_token"]:
            raise OAuthUnreachable("the token endpoint answered without an access_token")
        return token

    @staticmethod
    def _token_set(token: dict[str, Any], app: OAuthApp, previous_refresh: str | None) -> TokenSet:
        refresh = token.get("refresh_token")
        return TokenSet(
            access_token=str(token["access_token"]),
            refresh_token=refresh if isinstance(refresh, str) and refresh else previous_refresh,
            expires_at=token_expiry(token.get("expires_in"), utcnow()),
            scopes=granted_scopes(token.get("scope"), app.scopes),
        )
