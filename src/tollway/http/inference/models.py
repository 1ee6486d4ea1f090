"""``GET /v1/models`` and ``GET /v1/models/{slug}`` in the OpenAI list format."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tollway.errors import NotFound
from tollway.http.guards import require_inference
from tollway.http.responses import json_response
from tollway.http.state import services


async def list_models(request: Request) -> Response:
    principal = await require_inference(request)
    assert principal.platform_id is not None
    return json_response(await services(request).models.list(principal.platform_id))


async def get_model(request: Request) -> Response:
    slug = request.path_params["slug"]
    if not slug:
        # ``{slug:path}`` also matches the empty slug: /v1/models/ is a trailing slash, an unknown route (SPEC §2.3
        # step 1, before authentication), not a model lookup.
        raise NotFound("Unknown route.")
    principal = await require_inference(request)
    assert principal.platform_id is not None
    return json_response(await services(request).models.get(principal.platform_id, slug))
