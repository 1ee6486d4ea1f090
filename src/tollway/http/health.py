"""Operations endpoints (SPEC §13.4): ``/healthz`` (the process runs), ``/readyz`` (the database answers, no
migration is pending, not draining), ``/metrics`` (Prometheus text, no authentication)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tollway.errors import ServiceUnavailable
from tollway.http.responses import json_response
from tollway.http.state import drain, services
from tollway.observability.metrics import CONTENT_TYPE


async def healthz(_request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    if drain(request).draining:
        raise ServiceUnavailable("The instance is draining before it stops.")
    checks = await services(request).operations.readiness()
    return json_response({"status": "ready", "checks": checks})


async def metrics(request: Request) -> Response:
    svc = services(request)
    await svc.operations.refresh_store_gauges()
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE)
