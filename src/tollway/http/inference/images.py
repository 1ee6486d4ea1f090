"""``POST /v1/images/generations`` (OpenAI shape) and its alias ``POST /v1/image/generate`` (ASI:One shape):
parse -> ImagesService -> JSON (SPEC §7.7). Errors of both routes use the envelope of §3."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.image_request import ImageRequest, parse_asi1_image_request, parse_image_request
from tollway.http.body import read_json
from tollway.http.guards import require_inference
from tollway.http.inference.chat import session_id_header
from tollway.http.responses import json_response
from tollway.http.state import services
from tollway.services.inference.call import CallContext
from tollway.services.inference.images import REQUEST_TYPE, GeneratedImages


async def _generate(request: Request, parse: Callable[[dict[str, Any]], ImageRequest]) -> GeneratedImages:
    received = time.perf_counter()
    svc = services(request)
    principal = await require_inference(request)
    body = parse(await read_json(request, svc.settings.max_body_bytes))
    ctx = CallContext(principal, request.state.request_id, session_id_header(request), received, REQUEST_TYPE)
    result: GeneratedImages = await svc.images.generate(ctx, body)
    return result


def _headers(result: GeneratedImages) -> dict[str, str]:
    return {"x-tollway-provider": result.provider_slug, **result.headers}


async def generate_images(request: Request) -> Response:
    result = await _generate(request, parse_image_request)
    return json_response({"created": int(time.time()), "data": result.data}, headers=_headers(result))


async def generate_image_asi1(request: Request) -> Response:
    result = await _generate(request, parse_asi1_image_request)
    body = {
        "status": 1,
        "message": "Success",
        "created": int(time.time() * 1000),  # ASI:One answers in Unix milliseconds
        "images": [{"url": entry["url"]} for entry in result.data],
    }
    return json_response(body, headers=_headers(result))
