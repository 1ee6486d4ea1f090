"""A platform's webhook endpoints in the console (SPEC §17.1, §5.8): list and create (the signing secret is shown
once), per endpoint its deliveries with replay, secret rotation (the new secret shown once), pause and resume."""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.console import ShownOnce
from tollway.domain.keys import KeyKind
from tollway.domain.webhooks import ALL_EVENTS, DEFAULT_EVENTS
from tollway.errors import TollwayError
from tollway.http.console.pages import redirect, render
from tollway.http.console.platform import own_platform
from tollway.http.console.session import form, page, show_once
from tollway.http.management.params import paging, path_id, query_text
from tollway.http.management.webhooks import render_delivery, render_endpoint
from tollway.http.state import management
from tollway.services.console.sessions import ActiveSession

PLATFORM: Final = KeyKind.PLATFORM
DELIVERY_STATUSES: Final = ("pending", "succeeded", "failed")


async def _list_view(request: Request, session: ActiveSession, *, error: TollwayError | None = None) -> Response:
    pages = paging(request)
    rows, total = await management(request).webhooks.list_endpoints(own_platform(session), pages.offset, pages.limit)
    return render(
        request, session, "pl_webhooks.html", error=error, endpoints=[render_endpoint(r) for r in rows],
        total=total, pages=pages, events=ALL_EVENTS, default_events=DEFAULT_EVENTS,
    )  # fmt: skip


@page(PLATFORM)
async def webhooks_page(request: Request, session: ActiveSession) -> Response:
    return await _list_view(request, session)


@page(PLATFORM)
async def create_endpoint(request: Request, session: ActiveSession) -> Response:
    submitted = form(request)
    body: dict[str, Any] = submitted.body({"url": "text", "description": "text"})
    body["events"] = submitted.all("events")
    try:
        row, secret = await management(request).webhooks.create(own_platform(session), body)
    except TollwayError as error:
        return await _list_view(request, session, error=error)
    note = "Its signing secret, shown once: copy it now."
    shown = ShownOnce(
        "Endpoint created", secret, note, link=f"/console/webhooks/{row['id']}", link_text="Open the endpoint"
    )
    return await show_once(request, session, "/console/webhooks", shown)


async def _endpoint_view(
    request: Request,
    session: ActiveSession,
    endpoint_id: str,
    *,
    error: TollwayError | None = None,
) -> Response:
    platform_id = own_platform(session)
    hooks = management(request).webhooks
    endpoint = render_endpoint(await hooks.get(platform_id, endpoint_id))
    pages = paging(request)
    status = query_text(request, "status") or None
    rows, total = await hooks.deliveries(platform_id, endpoint_id, status, pages.offset, pages.limit)
    return render(
        request, session, "pl_webhook.html", error=error, endpoint=endpoint,
        deliveries=[render_delivery(r) for r in rows], total=total, pages=pages, statuses=DELIVERY_STATUSES,
        chosen=status or "", query=f"status={status}&" if status else "",
    )  # fmt: skip


@page(PLATFORM)
async def endpoint_page(request: Request, session: ActiveSession) -> Response:
    return await _endpoint_view(request, session, path_id(request, "id"))


@page(PLATFORM)
async def update_endpoint(request: Request, session: ActiveSession) -> Response:
    endpoint_id = path_id(request, "id")
    body = {"is_active": form(request).get("is_active") == "true"}
    try:
        await management(request).webhooks.update(own_platform(session), endpoint_id, body)
    except TollwayError as error:
        return await _endpoint_view(request, session, endpoint_id, error=error)
    return redirect(f"/console/webhooks/{endpoint_id}", "saved")


@page(PLATFORM)
async def rotate_secret(request: Request, session: ActiveSession) -> Response:
    endpoint_id = path_id(request, "id")
    secret, _ = await management(request).webhooks.rotate(own_platform(session), endpoint_id)
    note = "Shown once: copy it now. For 24 hours deliveries are signed with both the old and the new secret."
    return await show_once(
        request, session, f"/console/webhooks/{endpoint_id}", ShownOnce("New signing secret", secret, note)
    )


@page(PLATFORM)
async def replay_delivery(request: Request, session: ActiveSession) -> Response:
    endpoint_id, delivery_id = path_id(request, "id"), path_id(request, "delivery_id")
    try:
        await management(request).webhooks.replay(own_platform(session), endpoint_id, delivery_id)
    except TollwayError as error:
        return await _endpoint_view(request, session, endpoint_id, error=error)
    return redirect(f"/console/webhooks/{endpoint_id}", "replayed")


@page(PLATFORM)
async def delete_endpoint(request: Request, session: ActiveSession) -> Response:
    await management(request).webhooks.delete(own_platform(session), path_id(request, "id"))
    return redirect("/console/webhooks", "deleted")
