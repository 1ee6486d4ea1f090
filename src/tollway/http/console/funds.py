"""Add funds (SPEC §17.2): a platform pays by card through Stripe Checkout. The page opens a Checkout Session with
the same service as ``POST /v1/platforms/{pid}/wallet/checkout``, under the Idempotency-Key of the rendered form
(``form_keys.py``: a form sent twice opens one session and shows the same link), and links to Stripe's page;
Stripe's signed webhook credits the wallet (never this page). Shown only while Stripe is configured; otherwise 404
with the API's message."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.card_topups import CheckoutSession
from tollway.domain.idempotency import StoredResponse
from tollway.domain.keys import KeyKind
from tollway.errors import TollwayError, UpstreamError
from tollway.http.console.form_keys import first_answer, idempotency_key, new_form_key
from tollway.http.console.pages import render
from tollway.http.console.platform import own_platform
from tollway.http.console.session import form, page
from tollway.http.state import management
from tollway.services.console.sessions import ActiveSession
from tollway.services.management.idempotency import idempotent_request


@page(KeyKind.PLATFORM)
async def add_funds_page(request: Request, session: ActiveSession) -> Response:
    management(request).card_topups.enabled()
    return _page(request, session)


@page(KeyKind.PLATFORM)
async def start_checkout(request: Request, session: ActiveSession) -> Response:
    """The payer leaves through a link (not a redirect: the page's form-action policy allows only Tollway)."""
    m = management(request)
    topups = m.card_topups
    topups.enabled()
    submitted = form(request)
    body = submitted.body({"amount_usd": "usd"})
    platform_id = own_platform(session)
    try:
        order = topups.order(platform_id, body)
        path = f"/v1/platforms/{platform_id}/wallet/checkout"  # the API's own record: one key, one session
        key = idempotent_request(platform_id, "POST", path, idempotency_key(session, submitted), body)
        outcome = await first_answer(lambda: m.idempotency.execute_call(key, lambda: topups.open(order, key), _created))
        answer = orjson.loads(outcome.body)
        if outcome.status != 201:  # the first sending's stored refusal, replayed
            raise UpstreamError(str(answer.get("error", {}).get("message", "The checkout could not be opened.")))
    except TollwayError as error:
        return _page(request, session, error=error)
    return _page(request, session, checkout_url=str(answer["checkout_url"]))


def _page(
    request: Request, session: ActiveSession, *, error: TollwayError | None = None, checkout_url: str | None = None
) -> Response:
    return render(
        request, session, "pl_add_funds.html", error=error, checkout_url=checkout_url, idempotency_key=new_form_key()
    )


def _created(session: CheckoutSession) -> StoredResponse:
    return StoredResponse(201, orjson.dumps({"checkout_url": session.checkout_url, "session_id": session.session_id}))
