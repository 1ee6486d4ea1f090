"""Add funds (SPEC §17.2): a platform pays by card through Stripe Checkout. The page opens a Checkout Session with
the same service as ``POST /v1/platforms/{pid}/wallet/checkout`` and links to Stripe's page; Stripe's signed webhook
credits the wallet (never this page). Shown only while Stripe is configured; otherwise 404 with the API's message."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.keys import KeyKind
from tollway.errors import TollwayError
from tollway.http.console.pages import render
from tollway.http.console.platform import own_platform
from tollway.http.console.session import form, page
from tollway.http.state import management
from tollway.services.console.sessions import ActiveSession


@page(KeyKind.PLATFORM)
async def add_funds_page(request: Request, session: ActiveSession) -> Response:
    management(request).card_topups.enabled()
    return render(request, session, "pl_add_funds.html", checkout_url=None)


@page(KeyKind.PLATFORM)
async def start_checkout(request: Request, session: ActiveSession) -> Response:
    """The payer leaves through a link (not a redirect: the page's form-action policy allows only Tollway)."""
    topups = management(request).card_topups
    topups.enabled()
    body = form(request).body({"amount_usd": "usd"})
    try:
        checkout = await topups.checkout(own_platform(session), body)
    except TollwayError as error:
        return render(request, session, "pl_add_funds.html", error=error, checkout_url=None)
    return render(request, session, "pl_add_funds.html", checkout_url=checkout.checkout_url)
