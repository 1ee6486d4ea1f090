"""``GET /v1/mcp/oauth/callback`` (SPEC §16.2): no key, the single-use ``state`` authenticates. The browser goes back
to the ``redirect_uri`` given at connect with ``?mcp_app=<slug>&status=connected`` (or ``status=error&error=<code>``),
or sees a short page. A reused, expired or forged state is a 400 and nothing is stored."""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tollway.http.state import services
from tollway.services.agents.mcp_connections import CallbackOutcome

_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>"
    "<body><h1>{title}</h1><p>{text}</p></body></html>"
)
_NO_STORE = {"cache-control": "no-store", "referrer-policy": "no-referrer"}


def _redirect(outcome: CallbackOutcome, target: str) -> Response:
    query = {"mcp_app": outcome.app_slug, "status": "connected" if outcome.error is None else "error"}
    if outcome.error is not None:
        query["error"] = outcome.error
    joiner = "&" if "?" in target else "?"
    return RedirectResponse(target + joiner + urlencode(query), status_code=303, headers=_NO_STORE)


def _page(outcome: CallbackOutcome) -> Response:
    slug = escape(outcome.app_slug)
    if outcome.error is None:
        body = _PAGE.format(title="Connected", text=f"The app {slug} is connected. You can close this window.")
        return HTMLResponse(body, headers=_NO_STORE)
    text = f"The app {slug} could not be connected ({escape(outcome.error)}). Please try again."
    # A page the browser shows, not an API error: the callback itself was handled (the state was valid and is spent).
    return HTMLResponse(_PAGE.format(title="Not connected", text=text), headers=_NO_STORE)


async def oauth_callback(request: Request) -> Response:
    params = request.query_params
    outcome = await services(request).mcp_connections.callback(
        params.get("code"), params.get("state"), params.get("error")
    )
    return _redirect(outcome, outcome.redirect_uri) if outcome.redirect_uri else _page(outcome)


routes: list[BaseRoute] = [Route("/v1/mcp/oauth/callback", oauth_callback, methods=["GET"])]
