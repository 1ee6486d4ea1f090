"""``POST /v1/embeddings`` and ``POST /v1/moderations``: parse -> EmbeddingsService / ModerationsService -> JSON
(SPEC §19). Errors use the envelope of §3."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.embedding_request import parse_embedding_request, parse_moderation_request
from tollway.domain.tenancy import Principal
from tollway.http.body import disconnect_probe, read_json
from tollway.http.guards import require_inference
from tollway.http.inference.chat import session_id_header
from tollway.http.responses import json_response
from tollway.http.state import services
from tollway.services.inference import embeddings, moderations
from tollway.services.inference.answers import Completion
from tollway.services.inference.call import CallContext


def _context(request: Request, principal: Principal, received: float, request_type: str) -> CallContext:
    return CallContext(
        principal,
        request.state.request_id,
        session_id_header(request),
        received,
        request_type,
        client_gone=disconnect_probe(request),
    )


def _answer(outcome: Completion) -> Response:
    return json_response(outcome.body, headers={"x-tollway-provider": outcome.provider_slug, **outcome.headers})


async def create_embeddings(request: Request) -> Response:
    received = time.perf_counter()
    svc = services(request)
    principal = await require_inference(request)
    body = parse_embedding_request(await read_json(request, svc.settings.max_body_bytes))
    ctx = _context(request, principal, received, embeddings.REQUEST_TYPE)
    return _answer(await svc.embeddings.embed(ctx, body))


async def create_moderation(request: Request) -> Response:
    received = time.perf_counter()
    svc = services(request)
    principal = await require_inference(request)
    body = parse_moderation_request(await read_json(request, svc.settings.max_body_bytes))
    ctx = _context(request, principal, received, moderations.REQUEST_TYPE)
    return _answer(await svc.moderations.moderate(ctx, body))
