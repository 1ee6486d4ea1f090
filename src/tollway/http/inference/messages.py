"""``POST /v1/messages``: Anthropic's Messages API inbound (SPEC §19). The key comes as ``x-api-key`` or
``Authorization: Bearer``; ``anthropic-version`` is accepted and not needed. The call runs on the chat kind's
lifecycle (``request_type: "messages"``) and is answered in Anthropic's shape; every error on this route, including
authentication and validation, uses Anthropic's envelope with the §3 status."""

from __future__ import annotations

import logging
import time

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.messages_output import MESSAGES, error_body
from tollway.domain.messages_request import in_anthropic_terms, parse_messages_request
from tollway.errors import InternalError, InvalidRequest, TollwayError
from tollway.http.body import disconnect_probe, read_json
from tollway.http.guards import require_inference
from tollway.http.inference.chat import session_id_header
from tollway.http.responses import json_response
from tollway.http.sse import EventStreamResponse, messages_events
from tollway.http.state import services
from tollway.services.inference.answers import Completion
from tollway.services.inference.call import CallContext

log = logging.getLogger("tollway.http")

_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def error_response(error: TollwayError, request_id: str) -> Response:
    body = orjson.dumps(error_body(error, request_id))
    return Response(body, status_code=error.status, headers=error.headers, media_type="application/json")


async def create_message(request: Request) -> Response:
    try:
        return await _create_message(request)
    except TollwayError as error:
        return error_response(error, request.state.request_id)
    except Exception:
        log.exception("unhandled error")
        return error_response(InternalError(), request.state.request_id)


async def _create_message(request: Request) -> Response:
    received = time.perf_counter()
    svc = services(request)
    principal = await require_inference(request, api_key_header=True)
    body = await read_json(request, svc.settings.max_body_bytes)
    chat = parse_messages_request(body)
    ctx = CallContext(
        principal,
        request.state.request_id,
        session_id_header(request),
        received,
        request_type="messages",
        client_gone=disconnect_probe(request),
    )
    try:
        outcome = await svc.chat.complete(ctx, chat, MESSAGES)
    except InvalidRequest as error:  # a provider's refusal names the translated path: name the caller's
        raise in_anthropic_terms(error, body) from None
    if isinstance(outcome, Completion):
        return json_response(outcome.body, headers={"x-tollway-provider": outcome.provider_slug, **outcome.headers})
    headers = {**_SSE_HEADERS, "x-tollway-provider": outcome.provider_slug, **outcome.headers}
    return EventStreamResponse(messages_events(outcome.events), headers, outcome.ended)
