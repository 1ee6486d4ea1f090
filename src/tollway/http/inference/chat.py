"""``POST /v1/chat/completions``: parse -> InferenceService -> JSON or SSE."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.chat_request import parse_chat_request
from tollway.errors import InvalidRequest
from tollway.http.body import disconnect_probe, read_json
from tollway.http.guards import require_inference
from tollway.http.responses import json_response
from tollway.http.sse import EventStreamResponse, chat_events
from tollway.http.state import services
from tollway.services.inference.answers import Completion
from tollway.services.inference.call import CallContext

_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def session_id_header(request: Request) -> str | None:
    value = request.headers.get("x-session-id")
    if value is None:
        return None
    if not (1 <= len(value) <= 128) or not all(32 <= ord(ch) < 127 for ch in value):
        raise InvalidRequest("x-session-id must be 1 to 128 printable ASCII characters.", "x-session-id")
    return value


async def chat_completions(request: Request) -> Response:
    received = time.perf_counter()
    svc = services(request)
    principal = await require_inference(request)
    chat = parse_chat_request(await read_json(request, svc.settings.max_body_bytes))
    ctx = CallContext(
        principal, request.state.request_id, session_id_header(request), received, client_gone=disconnect_probe(request)
    )
    outcome = await svc.chat.complete(ctx, chat)
    if isinstance(outcome, Completion):
        return json_response(outcome.body, headers={"x-tollway-provider": outcome.provider_slug, **outcome.headers})
    headers = {**_SSE_HEADERS, "x-tollway-provider": outcome.provider_slug, **outcome.headers}
    return EventStreamResponse(chat_events(outcome.events), headers, outcome.ended)
