"""Signing in and out (SPEC §17.1): a key is exchanged for a server-side session whose id travels only in the
HttpOnly cookie; the key itself is never stored, echoed or kept in the browser. The sign-in form carries its own
CSRF token (a short-lived cookie compared with a hidden field), so no other site can sign a browser in."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

from tollway.errors import Forbidden, TollwayError
from tollway.http.console.forms import read_form
from tollway.http.console.pages import redirect, render
from tollway.http.console.security import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SIGN_IN_TTL_S,
    clear_cookie,
    same_origin,
    set_cookie,
    tokens_match,
)
from tollway.http.console.session import CSRF_MESSAGE, current_session, page
from tollway.http.state import services
from tollway.services.console.sessions import ActiveSession


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _form_page(request: Request, error: TollwayError | None = None) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(request, None, "sign_in.html", error=error, sign_in_token=token)
    set_cookie(request, response, SIGN_IN_COOKIE, token, max_age=SIGN_IN_TTL_S)
    return response


async def sign_in_page(request: Request) -> Response:
    if await current_session(request) is not None:
        return redirect("/console")
    return _form_page(request)


async def sign_in(request: Request) -> Response:
    try:
        submitted = await read_form(request)
        expected = request.cookies.get(SIGN_IN_COOKIE)
        if not same_origin(request) or expected is None or not tokens_match(expected, submitted.get("csrf")):
            raise Forbidden(CSRF_MESSAGE)
        raw_key = submitted.get("key") or ""
        session_id, _ = await services(request).console.sessions.sign_in(raw_key, _client_ip(request))
    except TollwayError as error:
        return _form_page(request, error)
    response = redirect("/console")
    set_cookie(request, response, SESSION_COOKIE, session_id)
    clear_cookie(request, response, SIGN_IN_COOKIE)
    return response


@page()
async def sign_out(request: Request, session: ActiveSession) -> Response:
    await services(request).console.sessions.sign_out(session)
    response = redirect("/console/sign-in")
    clear_cookie(request, response, SESSION_COOKIE)
    return response
