"""``/healthz`` (the process runs) and ``/readyz`` (the database answers and no migration is pending), §13.4."""

from __future__ import annotations

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from tollway.errors import ServiceUnavailable
from tollway.http.responses import json_response
from tollway.storage.migrate import current_revision, head_revision


async def healthz(_request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    services = request.app.state.services
    try:
        async with services.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        current = await current_revision(services.engine)
    except Exception as exc:
        raise ServiceUnavailable("The database is unreachable.") from exc
    if current != head_revision(services.settings):
        raise ServiceUnavailable("Database migrations are pending.")
    redis = await services.rate_limiter.backend_status()
    return json_response({"status": "ready", "checks": {"database": "ok", "redis": redis}})
