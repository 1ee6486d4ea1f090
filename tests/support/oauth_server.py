"""A real OAuth 2.1 authorization server for MCP connection tests (RFC 6749 authorization code, RFC 7636 PKCE S256,
RFC 7009 revocation): a small Starlette app served by uvicorn on a free port, in a thread.

It checks what a strict server checks (client credentials by HTTP Basic or in the body, the exact redirect_uri, the
PKCE S256 verifier, single-use codes, rotating refresh tokens) and records what tests assert on: how many refreshes
it served, which tokens were revoked. Every token it issues is registered with the session's canary watch, so that
one appearing in a response body, an error or a log line fails the suite.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.canary import WATCH
from tests.support.servers import free_port


@dataclass
class _Grant:
    redirect_uri: str
    challenge: str
    scope: str
    expires: float


async def _form(request: Request) -> dict[str, str]:
    assert request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
    return dict(parse_qsl((await request.body()).decode()))


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class OAuthServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = "tollway-test-" + secrets.token_hex(4)
        self.client_secret = "cs-" + secrets.token_urlsafe(24)
        WATCH.remember(self.client_secret)
        self.access_ttl_s: int | None = 3600  # None: no expires_in in token responses
        self.refresh_delay_s = 0.0  # widens the window in which concurrent refreshes would overlap
        self.refuse_refresh = False
        self.deny = False  # the user refuses at the authorize page
        # True: /authorize answers a page with an "Approve" link, so that the redirect to the callback is started by
        # this server's page (another site than the gateway's), as when a real user consents
        self.consent_page = False
        self.refreshes = 0
        self.exchanges = 0
        self.revoked: list[tuple[str, str | None]] = []
        self.issued: list[str] = []  # every token, in order: access, refresh, access, refresh, …
        self.authorize_requests: list[dict[str, str]] = []
        self._codes: dict[str, _Grant] = {}
        self._access: dict[str, float] = {}
        self._refresh: dict[str, str] = {}  # refresh token -> scope
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- endpoints ------------------------------------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        if self.consent_page and request.url.path == "/authorize":
            approve = "/authorize/approve?" + urlencode(dict(request.query_params))
            page = f'<!doctype html><title>Consent</title><a id="approve" href="{html.escape(approve)}">Approve</a>'
            return HTMLResponse(page)
        q = dict(request.query_params)
        with self._lock:
            self.authorize_requests.append(q)
        if q.get("client_id") != self.client_id or not q.get("redirect_uri"):
            return JSONResponse({"error": "invalid_request"}, 400)  # never redirect to an unverified URI
        target = q["redirect_uri"]
        joiner = "&" if "?" in target else "?"
        if self.deny:
            return RedirectResponse(target + joiner + urlencode({"error": "access_denied", "state": q["state"]}), 302)
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            error = {"error": "invalid_request", "state": q.get("state", "")}
            return RedirectResponse(target + joiner + urlencode(error), 302)
        code = "code-" + secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = _Grant(target, q["code_challenge"], q.get("scope", ""), time.monotonic() + 60)
        return RedirectResponse(target + joiner + urlencode({"code": code, "state": q["state"]}), 302)

    def _client_ok(self, request: Request, form: dict[str, str]) -> bool:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return secrets.compare_digest(user, self.client_id) and secrets.compare_digest(password, self.client_secret)
        return form.get("client_id") == self.client_id and form.get("client_secret") == self.client_secret

    def _issue(self, scope: str) -> dict[str, Any]:
        access, refresh = "at-" + secrets.token_urlsafe(24), "rt-" + secrets.token_urlsafe(24)
        WATCH.remember(access)
        WATCH.remember(refresh)
        self.issued += [access, refresh]
        ttl = self.access_ttl_s
        self._access[access] = time.monotonic() + (ttl if ttl is not None else 10**6)
        self._refresh[refresh] = scope
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "refresh_token": refresh}
        if ttl is not None:
            body["expires_in"] = ttl
        if scope:
            body["scope"] = scope
        return body

    async def _token(self, request: Request) -> Response:
        form = await _form(request)
        if not self._client_ok(request, form):
            return JSONResponse({"error": "invalid_client"}, 401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            with self._lock:
                grant = self._codes.pop(form.get("code", ""), None)  # single use, whatever happens next
                if (
                    grant is None
                    or grant.expires < time.monotonic()
                    or form.get("redirect_uri") != grant.redirect_uri
                    or s256(form.get("code_verifier", "")) != grant.challenge
                ):
                    return JSONResponse({"error": "invalid_grant"}, 400)
                self.exchanges += 1
                return JSONResponse(self._issue(grant.scope), headers={"cache-control": "no-store"})
        if grant_type == "refresh_token":
            if self.refresh_delay_s:
                await asyncio.sleep(self.refresh_delay_s)
            with self._lock:
                self.refreshes += 1
                scope = self._refresh.pop(form.get("refresh_token", ""), None)  # rotation: the old one dies
                if scope is None or self.refuse_refresh:
                    return JSONResponse({"error": "invalid_grant", "error_description": "refresh refused"}, 400)
                return JSONResponse(self._issue(scope), headers={"cache-control": "no-store"})
        return JSONResponse({"error": "unsupported_grant_type"}, 400)

    async def _revoke(self, request: Request) -> Response:
        form = await _form(request)
        if not self._client_ok(request, form):
            return JSONResponse({"error": "invalid_client"}, 401)
        token = form.get("token", "")
        with self._lock:
            self.revoked.append((token, form.get("token_type_hint")))
            self._access.pop(token, None)
            self._refresh.pop(token, None)
        return Response(status_code=200)

    async def _whoami(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            valid = self._access.get(token, 0) > time.monotonic()
        return JSONResponse({"ok": True}) if valid else JSONResponse({"error": "invalid_token"}, 401)

    # -- for tests ------------------------------------------------------------------------------------------------

    def is_valid(self, access_token: str) -> bool:
        with self._lock:
            return self._access.get(access_token, 0) > time.monotonic()

    @property
    def authorize_url(self) -> str:
        return self.url + "/authorize"

    def app_auth(self, scopes: list[str], **changes: Any) -> dict[str, Any]:
        """An MCP app's ``auth`` object (SPEC §16.1) for this server, with ``changes`` applied."""
        auth = {
            "type": "oauth2",
            "authorize_url": self.authorize_url,
            "token_url": self.token_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scopes": scopes,
        }
        return {**auth, **changes}

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    @property
    def revocation_url(self) -> str:
        return self.url + "/revoke"

    def start(self) -> OAuthServer:
        app = Starlette(
            routes=[
                Route("/authorize", self._authorize, methods=["GET"]),
                Route("/authorize/approve", self._authorize, methods=["GET"]),
                Route("/token", self._token, methods=["POST"]),
                Route("/revoke", self._revoke, methods=["POST"]),
                Route("/whoami", self._whoami, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="oauth-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the OAuth server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=20)
