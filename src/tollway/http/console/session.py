"""From the session cookie to the signed-in principal, for every console page: no session (or one that ended) sends
the browser to the sign-in page; a page of another kind of key is 403 ``wrong_key_type``; every POST must carry the
session's CSRF token (and, when the browser sends ``Origin``, come from this origin), else 403 ``forbidden`` and
nothing runs. A ``TollwayError`` from a service is shown as its §3 message with its status.

A form that creates a secret answers with ``show_once``: the secret stays (sealed) in the server-side session and the
browser is redirected to the page that shows it, opened by a random ``?shown=`` id; ``page`` takes it for that GET,
once (post/redirect/get: a reload neither re-sends the form nor shows the secret again)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.console import ShownOnce
from tollway.domain.keys import KeyKind
from tollway.errors import Forbidden, TollwayError, WrongKeyType
from tollway.http.console.forms import Form, read_form
from tollway.http.console.pages import KIND_NAMES, SHOWN_PARAM, redirect, render
from tollway.http.console.security import SESSION_COOKIE, clear_cookie, same_origin, tokens_match
from tollway.http.state import services
from tollway.observability.context import bind_principal
from tollway.services.console.sessions import ActiveSession

View = Callable[[Request, ActiveSession], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
ALL_KINDS = (KeyKind.OPERATOR, KeyKind.PLATFORM, KeyKind.END_USER)
CSRF_MESSAGE = "This form's CSRF token is missing or does not match your session; reload the page and try again."


async def current_session(request: Request) -> ActiveSession | None:
    return await services(request).console.sessions.resume(request.cookies.get(SESSION_COOKIE))


def form(request: Request) -> Form:
    """The checked form of this POST (read by ``page`` before the view runs)."""
    return cast(Form, request.state.console_form)


async def _checked_form(request: Request, session: ActiveSession) -> Form:
    if not same_origin(request):
        raise Forbidden(CSRF_MESSAGE)
    submitted = await read_form(request)
    if not tokens_match(session.csrf_token, submitted.get("csrf")):
        raise Forbidden(CSRF_MESSAGE)
    return submitted


async def show_once(request: Request, session: ActiveSession, path: str, shown: ShownOnce) -> Response:
    """Post/redirect/get for a form that created a secret: ``path`` (one of our own pages) shows it once."""
    display_id = await services(request).console.sessions.show_once(session, shown)
    return redirect(f"{path}?{SHOWN_PARAM}={display_id}")


def page(*kinds: KeyKind) -> Callable[[View], Endpoint]:
    allowed = kinds or ALL_KINDS

    def decorate(view: View) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            session = await current_session(request)
            if session is None:
                response = redirect("/console/sign-in")
                if SESSION_COOKIE in request.cookies:
                    clear_cookie(request, response, SESSION_COOKIE)
                return response
            principal = session.principal
            bind_principal(principal.platform_id, principal.end_user_id)
            try:
                if principal.kind not in allowed:
                    names = " or ".join(KIND_NAMES[kind] for kind in allowed)
                    raise WrongKeyType(f"This page needs a {names} key.")
                if request.method == "POST":
                    request.state.console_form = await _checked_form(request, session)
                elif SHOWN_PARAM in request.query_params:
                    sessions = services(request).console.sessions
                    request.state.shown_once = await sessions.take_shown_once(
                        session, request.query_params[SHOWN_PARAM]
                    )
                return await view(request, session)
            except TollwayError as error:
                return render(request, session, "error.html", error=error)

        endpoint.__name__ = view.__name__
        endpoint.__doc__ = view.__doc__
        return endpoint

    return decorate
