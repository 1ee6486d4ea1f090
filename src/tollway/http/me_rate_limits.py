"""``GET /v1/me/rate-limits`` (SPEC §6): the calling end user's effective limits and where they come from
(``explicit`` with an override row, ``default`` when the platform sets any default, else ``none``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.http.guards import require_end_user
from tollway.http.responses import json_response
from tollway.http.state import management


async def my_rate_limits(request: Request) -> Response:
    principal = await require_end_user(request)
    assert principal.platform_id is not None and principal.end_user_id is not None  # an end-user key has both
    effective = await management(request).rate_limits.effective(principal.platform_id, principal.end_user_id)
    limits = effective.limits
    return json_response(
        {
            "rpm_limit": limits.rpm,
            "tpm_limit": limits.tpm,
            "rpd_limit": limits.rpd,
            "resolution": effective.resolution.value,
        }
    )


routes: list[BaseRoute] = [Route("/v1/me/rate-limits", my_rate_limits, methods=["GET"])]
