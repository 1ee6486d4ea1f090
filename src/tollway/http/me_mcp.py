"""An end user's MCP apps under /v1/me (SPEC §16.2; ``sk-eu_`` only, a platform key is 403 ``wrong_key_type``):
connecting an OAuth app, the MCP configuration to give an MCP client, and disconnecting. Never shows a token."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.domain.clock import rfc3339
from tollway.http.guards import require_end_user
from tollway.http.management.params import read_optional_body
from tollway.http.responses import json_response, no_content
from tollway.http.state import services
from tollway.services.agents.mcp_connections import ConfigEntry, McpConnections


def _service(request: Request) -> McpConnections:
    return services(request).mcp_connections


async def _owner(request: Request) -> tuple[str, str]:
    principal = await require_end_user(request)
    assert principal.platform_id is not None and principal.end_user_id is not None  # an end-user key has both
    return principal.platform_id, principal.end_user_id


def _config_entry(entry: ConfigEntry, service: McpConnections) -> dict[str, Any]:
    app = entry.app
    tools = app["allowed_tools"]
    return {
        "slug": app["slug"],
        "name": app["name"],
        "server_url": service.proxy_url(app["slug"]),
        "auth": app["auth_type"],
        "connected": entry.connected,
        "connected_at": rfc3339(entry.connected_at),
        "allowed_tools": None if tools is None else list(tools),
    }


async def connect(request: Request) -> Response:
    platform_id, end_user_id = await _owner(request)
    body = await read_optional_body(request)
    slug = str(request.path_params["slug"])
    started = await _service(request).connect(platform_id, end_user_id, slug, body)
    return json_response({"authorize_url": started.authorize_url, "expires_at": rfc3339(started.expires_at)})


async def mcp_config(request: Request) -> Response:
    platform_id, end_user_id = await _owner(request)
    service = _service(request)
    entries = await service.config(platform_id, end_user_id)
    return json_response({"apps": [_config_entry(entry, service) for entry in entries]})


async def disconnect(request: Request) -> Response:
    platform_id, end_user_id = await _owner(request)
    await _service(request).disconnect(platform_id, end_user_id, str(request.path_params["slug"]))
    return no_content()


routes: list[BaseRoute] = [
    Route("/v1/me/mcp/apps/{slug}/connect", connect, methods=["POST"]),
    Route("/v1/me/mcp/apps/{slug}/connection", disconnect, methods=["DELETE"]),
    Route("/v1/me/mcp-config", mcp_config, methods=["GET"]),
]
