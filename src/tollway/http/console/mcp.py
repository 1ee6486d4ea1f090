"""MCP in the console (SPEC §16.1, §16.2, §17.1): a platform's MCP apps (add, activate/deactivate, delete; secrets are
sealed and never shown) and its end users' connections; an end user's apps with their MCP server URLs, connecting an
OAuth app (the page links to the app's authorization page, and the OAuth callback brings the browser back to the
console) and disconnecting. The same services as the API."""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.clock import rfc3339
from tollway.domain.keys import KeyKind
from tollway.domain.mcp import APP_SLUG
from tollway.errors import TollwayError
from tollway.http.console.forms import Form
from tollway.http.console.pages import redirect, render
from tollway.http.console.platform import own_platform
from tollway.http.console.session import form, page
from tollway.http.management.mcp_apps import render_app, render_connection
from tollway.http.management.params import MAX_LIMIT, paging, path_id
from tollway.http.state import management, services
from tollway.services.console.sessions import ActiveSession

AUTH_TYPES: Final = ("none", "header", "oauth2")
# Where the OAuth callback sends the browser after a connection started in the console (§16.2's redirect_uri).
RETURNED_PATH: Final = "/console/mcp/returned"
_ERROR_CODE: Final = re.compile(r"[a-z0-9_.-]{1,64}")
# What the connections page says about the callback's outcome: fixed sentences; the code is shown only as a code.
_CONNECT_FAULTS: Final = {
    "access_denied": "the authorization was declined at the app",
    "app_unavailable": "the app is no longer offered",
    "temporarily_unavailable": "the app's authorization server could not be reached; try again",
    "server_error": "Tollway could not finish the connection; try again",
}
_LIST: Final = re.compile(r"[\s,]+")


def _words(text: str | None) -> list[str]:
    return [word for word in _LIST.split(text or "") if word]


def _auth(submitted: Form) -> dict[str, Any]:
    """``auth`` of §16.1 from the fields of the chosen type only (the form shows every type's fields)."""
    kind = submitted.get("auth_type") or "none"
    if kind == "header":
        header = submitted.body({"header_name": "text", "header_value": "text"})
        return {"type": kind, **{name.removeprefix("header_"): value for name, value in header.items()}}
    if kind == "oauth2":
        fields = {"authorize_url": "text", "token_url": "text", "client_id": "text", "client_secret": "text"}
        auth: dict[str, Any] = {"type": kind, **submitted.body({**fields, "revocation_url": "text"})}
        auth["scopes"] = _words(submitted.get("scopes"))
        return auth
    return {"type": kind}


# -- the platform's apps (§16.1) ------------------------------------------------------------------------------


async def _apps_view(request: Request, session: ActiveSession, error: TollwayError | None = None) -> Response:
    platform_id = own_platform(session)
    apps = management(request).mcp_apps
    pages = paging(request)
    rows, total = await apps.list_apps(platform_id, pages.offset, pages.limit)
    connections, connected = await apps.connections(platform_id, None, 0, MAX_LIMIT)
    return render(
        request, session, "pl_mcp_apps.html", error=error, apps=[render_app(r) for r in rows], total=total,
        pages=pages, connections=[render_connection(r) for r in connections], connected=connected,
        auth_types=AUTH_TYPES,
    )  # fmt: skip


@page(KeyKind.PLATFORM)
async def apps_page(request: Request, session: ActiveSession) -> Response:
    return await _apps_view(request, session)


@page(KeyKind.PLATFORM)
async def create_app(request: Request, session: ActiveSession) -> Response:
    submitted = form(request)
    body = submitted.body({"slug": "text", "name": "text", "server_url": "text", "price_per_call_usd": "usd"})
    body["auth"] = _auth(submitted)
    if submitted.text("allowed_tools") is not None:
        body["allowed_tools"] = _words(submitted.get("allowed_tools"))
    try:
        await management(request).mcp_apps.create(own_platform(session), body)
        services(request).invalidate_caches()  # the MCP proxy's cached app rows
    except TollwayError as error:
        return await _apps_view(request, session, error)
    return redirect("/console/mcp-apps", "saved")


@page(KeyKind.PLATFORM)
async def update_app(request: Request, session: ActiveSession) -> Response:
    body = {"is_active": form(request).get("is_active") == "true"}
    try:
        await management(request).mcp_apps.update(own_platform(session), path_id(request, "id"), body)
        services(request).invalidate_caches()  # the MCP proxy's cached app rows
    except TollwayError as error:
        return await _apps_view(request, session, error)
    return redirect("/console/mcp-apps", "saved")


@page(KeyKind.PLATFORM)
async def delete_app(request: Request, session: ActiveSession) -> Response:
    await management(request).mcp_apps.delete(own_platform(session), path_id(request, "id"))
    services(request).invalidate_caches()  # the MCP proxy's cached app rows
    return redirect("/console/mcp-apps", "deleted")


# -- an end user's connections (§16.2) ------------------------------------------------------------------------


def _owner(session: ActiveSession) -> tuple[str, str]:
    principal = session.principal
    assert principal.platform_id is not None and principal.end_user_id is not None  # an end-user session
    return principal.platform_id, principal.end_user_id


async def _connections_view(
    request: Request, session: ActiveSession, *, error: TollwayError | None = None, authorize: Any = None
) -> Response:
    platform_id, end_user_id = _owner(session)
    connections = services(request).mcp_connections
    entries = [
        {
            "slug": entry.app["slug"],
            "name": entry.app["name"],
            "server_url": connections.proxy_url(entry.app["slug"]),
            "auth": entry.app["auth_type"],
            "connected": entry.connected,
            "connected_at": rfc3339(entry.connected_at),
        }
        for entry in await connections.config(platform_id, end_user_id)
    ]
    outcome = _returned_outcome(request, entries)
    return render(request, session, "eu_mcp.html", error=error, apps=entries, authorize=authorize, outcome=outcome)


def _returned_outcome(request: Request, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The result of a connection the console started, from the ``?mcp_app=&status=`` the callback added (§16.2),
    about one of the caller's own apps only."""
    params = request.query_params
    app = next((entry for entry in entries if entry["slug"] == params.get("mcp_app")), None)
    status = params.get("status")
    if app is None or status not in ("connected", "error"):
        return None
    if status == "connected":
        return {"ok": True, "text": f"{app['name']} is connected.", "code": None}
    code = params.get("error", "")
    code = code if _ERROR_CODE.fullmatch(code) else "oauth_error"
    reason = _CONNECT_FAULTS.get(code, "the app's authorization server refused it")
    return {"ok": False, "text": f"{app['name']} was not connected: {reason}.", "code": code}


@page(KeyKind.END_USER)
async def connections_page(request: Request, session: ActiveSession) -> Response:
    return await _connections_view(request, session)


@page(KeyKind.END_USER)
async def connect(request: Request, session: ActiveSession) -> Response:
    """Starts the OAuth flow; the browser leaves through a link to the app's authorization page."""
    platform_id, end_user_id = _owner(session)
    slug = str(request.path_params["slug"])
    try:
        started = await services(request).mcp_connections.connect(
            platform_id, end_user_id, slug, {}, return_to=RETURNED_PATH
        )
    except TollwayError as error:
        return await _connections_view(request, session, error=error)
    authorize = {"slug": slug, "url": started.authorize_url, "expires_at": rfc3339(started.expires_at)}
    return await _connections_view(request, session, authorize=authorize)


async def returned(request: Request) -> Response:
    """The console's ``redirect_uri`` (§16.2): the browser arrives here from the app's authorization server, another
    site, so its SameSite=Strict session cookie is not sent. This page needs no session: it sends the browser on to
    the connections page itself (a navigation from our own page, which carries the cookie), keeping only a valid app
    slug, status and error code of the callback's query."""
    params = request.query_params
    slug, status = params.get("mcp_app", ""), params.get("status", "")
    query: dict[str, str] = {}
    if APP_SLUG.fullmatch(slug) and status in ("connected", "error"):
        query = {"mcp_app": slug, "status": status}
        if status == "error":
            code = params.get("error", "")
            query["error"] = code if _ERROR_CODE.fullmatch(code) else "oauth_error"
    target = "/console/mcp" + (f"?{urlencode(query)}" if query else "")
    return render(request, None, "eu_mcp_returned.html", target=target)


@page(KeyKind.END_USER)
async def disconnect(request: Request, session: ActiveSession) -> Response:
    platform_id, end_user_id = _owner(session)
    try:
        await services(request).mcp_connections.disconnect(platform_id, end_user_id, str(request.path_params["slug"]))
    except TollwayError as error:
        return await _connections_view(request, session, error=error)
    return redirect("/console/mcp", "disconnected")
