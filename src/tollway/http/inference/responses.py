"""``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``: parse -> ResponsesService -> JSON or SSE."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.responses_request import parse_responses_request
from tollway.http.body import disconnect_probe, read_json
from tollway.http.guards import require_inference
from tollway.http.inference.chat import session_id_header
from tollway.http.responses import json_response
from tollway.http.sse import EventStreamResponse, named_events
from tollway.http.state import services
from tollway.services.inference.answers import Completion
from tollway.services.inference.call import CallContext

_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
REQUEST_TYPE = "response"


async def create_response(request: Request) -> Response:
    received = time.perf_counter()
    svc = services(request)
    principal = await require_inference(request)
    body = parse_responses_request(await read_json(request, svc.settings.max_body_bytes))
    ctx = CallContext(
        principal,
        request.state.request_id,
        session_id_header(request),
        received,
        REQUEST_TYPE,
        client_gone=disconnect_probe(request),
    )
    outcome = await svc.responses.create(ctx, body)
    if isinstance(outcome, Completion):
        return json_response(outcome.body, headers={"x-tollway-provider": outcome.provider_slug, **outcome.headers})
    headers = {**_SSE_HEADERS, "x-tollway-provider": outcome.provider_slug, **outcome.headers}
    return EventStreamResponse(named_events(outcome.events, outcome.on_drain), headers, outcome.ended)


async def _context(request: Request) -> CallContext:
    principal = await require_inference(request)
    return CallContext(principal, request.state.request_id, None, time.perf_counter(), REQUEST_TYPE)


async def get_response(request: Request) -> Response:
    ctx = await _context(request)
    return json_response(await services(request).responses.get(ctx, request.path_params["response_id"]))


async def delete_response(request: Request) -> Response:
    ctx = await _context(request)
    return json_response(await services(request).responses.delete(ctx, request.path_params["response_id"]))
