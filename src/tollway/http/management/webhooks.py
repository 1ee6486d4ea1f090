"""Webhook endpoints under the platform API (SPEC §5.8): ``sk-plat_`` with scope ``manage``, own platform only;
a foreign or malformed endpoint or delivery id is 404. The secret appears only in the creating and rotating
responses; sealed secrets have no renderer."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.domain.clock import rfc3339
from tollway.domain.records import Record
from tollway.http.guards import require_platform_manage
from tollway.http.management.params import page_body, paging, path_id, query_text, read_body
from tollway.http.responses import json_response, no_content
from tollway.http.state import management
from tollway.services.management.webhooks import Webhooks


def _service(request: Request) -> Webhooks:
    return management(request).webhooks


async def _own_platform(request: Request) -> str:
    await require_platform_manage(request, str(request.path_params["pid"]))
    return path_id(request, "pid")


def render_endpoint(row: Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "platform_id": row["platform_id"],
        "url": row["url"],
        "events": list(row["events"]),
        "description": row["description"],
        "is_active": bool(row["is_active"]),
        "disabled_reason": row["disabled_reason"],
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


def render_delivery(row: Record) -> dict[str, Any]:
    pending = row["status"] == "pending"
    return {
        "id": row["id"],
        "endpoint_id": row["endpoint_id"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "webhook_id": row["webhook_id"],
        "status": row["status"],
        "attempts": list(row["attempts"] or []),
        "next_attempt_at": rfc3339(row["next_attempt_at"]) if pending else None,
        "created_at": rfc3339(row["created_at"]),
    }


async def list_endpoints(request: Request) -> Response:
    platform_id = await _own_platform(request)
    pages = paging(request)
    rows, total = await _service(request).list_endpoints(platform_id, pages.offset, pages.limit)
    return json_response(page_body([render_endpoint(row) for row in rows], total, pages))


async def create_endpoint(request: Request) -> Response:
    platform_id = await _own_platform(request)
    row, secret = await _service(request).create(platform_id, await read_body(request))
    return json_response({**render_endpoint(row), "secret": secret}, 201)


async def get_endpoint(request: Request) -> Response:
    platform_id = await _own_platform(request)
    return json_response(render_endpoint(await _service(request).get(platform_id, path_id(request, "id"))))


async def update_endpoint(request: Request) -> Response:
    platform_id = await _own_platform(request)
    endpoint_id = path_id(request, "id")
    row = await _service(request).update(platform_id, endpoint_id, await read_body(request))
    return json_response(render_endpoint(row))


async def delete_endpoint(request: Request) -> Response:
    platform_id = await _own_platform(request)
    await _service(request).delete(platform_id, path_id(request, "id"))
    return no_content()


async def rotate_secret(request: Request) -> Response:
    platform_id = await _own_platform(request)
    secret, expires_at = await _service(request).rotate(platform_id, path_id(request, "id"))
    return json_response({"secret": secret, "previous_secret_expires_at": rfc3339(expires_at)})


async def list_deliveries(request: Request) -> Response:
    platform_id = await _own_platform(request)
    endpoint_id = path_id(request, "id")
    pages = paging(request)
    status = query_text(request, "status")
    rows, total = await _service(request).deliveries(platform_id, endpoint_id, status, pages.offset, pages.limit)
    return json_response(page_body([render_delivery(row) for row in rows], total, pages))


async def replay_delivery(request: Request) -> Response:
    platform_id = await _own_platform(request)
    endpoint_id, delivery_id = path_id(request, "id"), path_id(request, "delivery_id")
    row = await _service(request).replay(platform_id, endpoint_id, delivery_id)
    return json_response(render_delivery(row), 202)


_BASE = "/v1/platforms/{pid}/webhooks"

routes: list[BaseRoute] = [
    Route(_BASE, list_endpoints, methods=["GET"]),
    Route(_BASE, create_endpoint, methods=["POST"]),
    Route(f"{_BASE}/{{id}}", get_endpoint, methods=["GET"]),
    Route(f"{_BASE}/{{id}}", update_endpoint, methods=["PATCH"]),
    Route(f"{_BASE}/{{id}}", delete_endpoint, methods=["DELETE"]),
    Route(f"{_BASE}/{{id}}/rotate-secret", rotate_secret, methods=["POST"]),
    Route(f"{_BASE}/{{id}}/deliveries", list_deliveries, methods=["GET"]),
    Route(f"{_BASE}/{{id}}/deliveries/{{delivery_id}}/replay", replay_delivery, methods=["POST"]),
]
