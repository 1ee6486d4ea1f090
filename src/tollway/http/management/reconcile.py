"""``GET /v1/admin/reconcile`` (operator key): SPEC §9.6 invariants 1, 2 and 6 recomputed from the store."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.http.guards import require_operator
from tollway.http.responses import json_response
from tollway.http.state import services


async def get_reconcile(request: Request) -> Response:
    await require_operator(request)
    report = await services(request).operations.reconcile()
    return json_response(report.body())


routes: list[BaseRoute] = [Route("/v1/admin/reconcile", get_reconcile, methods=["GET"])]
