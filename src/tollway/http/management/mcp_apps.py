"""MCP apps and end users' connections under the platform API (SPEC §16.1): ``sk-plat_`` with scope ``manage``, own
platform only; a foreign or malformed app id is 404. Secrets (header values, client secrets, tokens) have no
renderer: an app shows ``has_secret`` and ``auth`` without them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.domain.clock import rfc3339
from tollway.domain.money import nanos_to_json_number
from tollway.domain.records import Record
from tollway.http.guards import require_platform_manage
from tollway.http.management.params import page_body, paging, path_id, query_id, read_body
from tollway.http.responses import json_response, no_content
from tollway.http.state import management, services
from tollway.services.management.mcp_apps import McpApps


def _service(request: Request) -> McpApps:
    return management(request).mcp_apps


async def _own_platform(request: Request) -> str:
    await require_platform_manage(request, str(request.path_params["pid"]))
    return path_id(request, "pid")


def render_auth(row: Record) -> dict[str, Any]:
    """``auth`` as given, without its secret (``value``, ``client_secret``)."""
    return {"type": row["auth_type"], **dict(row["auth_config"] or {})}


def render_app(row: Record) -> dict[str, Any]:
    tools = row["allowed_tools"]
    return {
        "id": row["id"],
        "platform_id": row["platform_id"],
        "slug": row["slug"],
        "name": row["name"],
        "server_url": row["server_url"],
        "auth": render_auth(row),
        "has_secret": row["secret_sealed"] is not None,
        "price_per_call_usd": nanos_to_json_number(int(row["price_per_call_nanos"])),
        "allowed_tools": None if tools is None else list(tools),
        "is_active": bool(row["is_active"]),
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


def render_connection(row: Record) -> dict[str, Any]:
    return {
        "app_slug": row["app_slug"],
        "end_user_id": row["end_user_id"],
        "status": row["status"],
        "connected_at": rfc3339(row["connected_at"]),
        "scopes": list(row["scopes"] or []),
    }


async def list_apps(request: Request) -> Response:
    platform_id = await _own_platform(request)
    pages = paging(request)
    rows, total = await _service(request).list_apps(platform_id, pages.offset, pages.limit)
    return json_response(page_body([render_app(row) for row in rows], total, pages))


async def create_app(request: Request) -> Response:
    platform_id = await _own_platform(request)
    created = await _service(request).create(platform_id, await read_body(request))
    services(request).invalidate_caches()  # the proxy's cached app rows (a slug that was unknown)
    return json_response(render_app(created), 201)


async def get_app(request: Request) -> Response:
    platform_id = await _own_platform(request)
    return json_response(render_app(await _service(request).get(platform_id, path_id(request, "app_id"))))


async def update_app(request: Request) -> Response:
    platform_id = await _own_platform(request)
    app_id = path_id(request, "app_id")
    updated = await _service(request).update(platform_id, app_id, await read_body(request))
    services(request).invalidate_caches()  # the proxy's cached app rows
    return json_response(render_app(updated))


async def delete_app(request: Request) -> Response:
    platform_id = await _own_platform(request)
    await _service(request).delete(platform_id, path_id(request, "app_id"))
    services(request).invalidate_caches()  # the proxy's cached app rows
    return no_content()


async def list_connections(request: Request) -> Response:
    platform_id = await _own_platform(request)
    pages = paging(request)
    end_user_id = query_id(request, "end_user_id")
    rows, total = await _service(request).connections(platform_id, end_user_id, pages.offset, pages.limit)
    return json_response(page_body([render_connection(row) for row in rows], total, pages))


_BASE = "/v1/platforms/{pid}/mcp"

routes: list[BaseRoute] = [
    Route(f"{_BASE}/apps", list_apps, methods=["GET"]),
    Route(f"{_BASE}/apps", create_app, methods=["POST"]),
    Route(f"{_BASE}/apps/{{app_id}}", get_app, methods=["GET"]),
    Route(f"{_BASE}/apps/{{app_id}}", update_app, methods=["PATCH"]),
    Route(f"{_BASE}/apps/{{app_id}}", delete_app, methods=["DELETE"]),
    Route(f"{_BASE}/connections", list_connections, methods=["GET"]),
]
