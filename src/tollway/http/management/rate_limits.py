"""Rate-limit overrides of one end user under /v1/platforms/{pid}/end-users/{id}/rate-limits (SPEC §5.6): the
§2.3 checks first (platform key, scope ``manage``, own platform, live end user of it, else 404), then the body.
Every instance applies a change within 1 s (its limit cache lives ≤ 1 s); this one at once (cache invalidation)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.domain.clock import rfc3339
from tollway.domain.records import Record
from tollway.http.guards import require_platform_manage
from tollway.http.management.params import path_id, read_body
from tollway.http.responses import json_response, no_content
from tollway.http.state import management, services
from tollway.services.management.rate_overrides import RateLimitOverrides


def render_override(row: Record) -> dict[str, Any]:
    return {
        "end_user_id": row["end_user_id"],
        "rpm_limit": row["rpm_limit"],
        "tpm_limit": row["tpm_limit"],
        "rpd_limit": row["rpd_limit"],
        "updated_at": rfc3339(row["updated_at"]),
    }


def _overrides(request: Request) -> RateLimitOverrides:
    return management(request).rate_limits


async def _own_end_user(request: Request) -> tuple[str, str]:
    """A malformed or foreign platform id, or an end user that is not a live one of it, is 404."""
    await require_platform_manage(request, str(request.path_params["pid"]))
    return path_id(request, "pid"), path_id(request, "id")


async def get_override(request: Request) -> Response:
    platform_id, end_user_id = await _own_end_user(request)
    return json_response(render_override(await _overrides(request).get(platform_id, end_user_id)))


async def put_override(request: Request) -> Response:
    platform_id, end_user_id = await _own_end_user(request)
    overrides = _overrides(request)
    await overrides.require_end_user(platform_id, end_user_id)  # 404 before the body is judged
    row = await overrides.put(platform_id, end_user_id, await read_body(request))
    services(request).invalidate_caches()
    return json_response(render_override(row))


async def delete_override(request: Request) -> Response:
    platform_id, end_user_id = await _own_end_user(request)
    await _overrides(request).delete(platform_id, end_user_id)
    services(request).invalidate_caches()
    return no_content()


_PATH = "/v1/platforms/{pid}/end-users/{id}/rate-limits"

routes: list[BaseRoute] = [
    Route(_PATH, get_override, methods=["GET"]),
    Route(_PATH, put_override, methods=["PUT"]),
    Route(_PATH, delete_override, methods=["DELETE"]),
]
