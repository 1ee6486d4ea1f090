"""Card top-ups (SPEC §17.2): ``POST /v1/platforms/{pid}/wallet/checkout`` (platform key, scope ``manage``) opens a
Stripe Checkout Session; ``POST /v1/stripe/webhook`` (no key: Stripe signs it) receives Stripe's events. Both answer
404 ``not_found`` when Stripe is not configured."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.domain.card_topups import CheckoutSession
from tollway.domain.idempotency import StoredResponse
from tollway.http.body import read_raw
from tollway.http.guards import require_platform_manage
from tollway.http.management.params import path_id, read_body, request_id
from tollway.http.responses import json_response
from tollway.http.state import management, services
from tollway.services.management.idempotency import idempotent_request


async def create_checkout(request: Request) -> Response:
    """Honours Idempotency-Key (§9.7) in the platform's scope: a repeat gets the first answer, and Stripe a key
    derived from it."""
    await require_platform_manage(request, str(request.path_params["pid"]))
    platform_id = path_id(request, "pid")
    topups = management(request).card_topups
    topups.enabled()  # 404 before the body is read
    body = await read_body(request)
    order = topups.order(platform_id, body)
    header = request.headers.get("idempotency-key")
    key = idempotent_request(platform_id, request.method, request.url.path, header, body)
    outcome = await management(request).idempotency.execute_call(key, lambda: topups.open(order, key), _created)
    return Response(outcome.body, outcome.status, headers=outcome.headers, media_type="application/json")


def _created(session: CheckoutSession) -> StoredResponse:
    return StoredResponse(201, orjson.dumps({"checkout_url": session.checkout_url, "session_id": session.session_id}))


async def stripe_webhook(request: Request) -> Response:
    topups = management(request).card_topups
    topups.enabled()
    payload = await read_raw(request, services(request).settings.max_body_bytes)
    await topups.receive(payload, request.headers.get("stripe-signature"), request_id(request))
    return json_response({"received": True})


routes: list[BaseRoute] = [
    Route("/v1/platforms/{pid}/wallet/checkout", create_checkout, methods=["POST"]),
    Route("/v1/stripe/webhook", stripe_webhook, methods=["POST"]),
]
