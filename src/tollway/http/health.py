"""Operations endpoints (SPEC §13.4): ``/healthz`` (the process runs), ``/readyz`` (the database answers, no
migration is pending, not draining), ``/metrics`` (Prometheus text, no authentication)."""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from tollway.errors import ServiceUnavailable
from tollway.http.responses import json_response
from tollway.http.state import drain, services
from tollway.observability.metrics import CONTENT_TYPE
from tollway.storage.sql.migrate import current_revision, head_revision
from tollway.storage.sql.reconcile import store_gauges

log = logging.getLogger("tollway.health")

_STORE_GAUGES_TIMEOUT_S = 2.0


async def healthz(_request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc = services(request)
    if drain(request).draining:
        raise ServiceUnavailable("The instance is draining before it stops.")
    try:
        async with svc.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        current = await current_revision(svc.engine)
    except Exception as exc:
        raise ServiceUnavailable("The database is unreachable.") from exc
    if current != head_revision(svc.settings):
        raise ServiceUnavailable("Database migrations are pending.")
    redis = await svc.rate_limiter.backend_status()
    return json_response({"status": "ready", "checks": {"database": "ok", "redis": redis}})


async def metrics(request: Request) -> Response:
    svc = services(request)
    store = svc.metrics.store
    try:
        async with asyncio.timeout(_STORE_GAUGES_TIMEOUT_S):
            store.holds_active, store.uncollected_nanos = await store_gauges(svc.engine)
    except Exception:  # the database is down: serve the process metrics without the store-wide ones
        log.warning("could not read holds and uncollected totals for /metrics", exc_info=True)
        store.holds_active = store.uncollected_nanos = None
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE)
