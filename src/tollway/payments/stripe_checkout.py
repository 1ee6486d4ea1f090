"""Stripe Checkout through the official ``stripe`` library (SPEC §17.2): Checkout Sessions are created with its
async client over aiohttp (never blocking the event loop), pointed at ``TOLLWAY_STRIPE_API_BASE`` when set; webhook
events are verified with its ``Stripe-Signature`` check (HMAC-SHA256, 300 s tolerance). The only module that
imports ``stripe``; it never logs or returns either secret."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import orjson
import stripe
from stripe import RequestOptions
from stripe.params.checkout import SessionCreateParams

from tollway.domain.card_topups import CURRENCY, CheckoutOrder, CheckoutSession
from tollway.domain.ports.payments import InvalidEvent
from tollway.errors import UpstreamError

TOLERANCE_S: Final = 300
PRODUCT_NAME: Final = "Tollway wallet top-up"
_MESSAGE_CHARS: Final = 300
_STRIPE_KEY_SHAPES: Final = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9*]+|whsec_[A-Za-z0-9+/=_*-]+")


class StripeCheckout:
    """The ``PaymentGateway`` port on Stripe. One client per process, built once by the composition root."""

    def __init__(self, secret_key: str, webhook_secret: str, *, api_base: str | None, timeout_s: float) -> None:
        self._webhook_secret = webhook_secret
        # Our own session (no cookie jar), closed at shutdown; the library's client sends through it.
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout_s), session=self._session),
            max_network_retries=2,  # the library adds an idempotency key, so a retried creation is one session
        )

    async def create_checkout(self, order: CheckoutOrder) -> CheckoutSession:
        params: SessionCreateParams = {
            "mode": "payment",
            "allowed_payment_method_types": ["card"],
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": CURRENCY,
                        "unit_amount": order.amount_cents,
                        "product_data": {"name": PRODUCT_NAME},
                    },
                }
            ],
            "client_reference_id": order.platform_id,
            "metadata": {"platform_id": order.platform_id},
            "payment_intent_data": {"metadata": {"platform_id": order.platform_id}},
            "success_url": order.success_url,
            "cancel_url": order.cancel_url,
        }
        try:
            session = await self._client.v1.checkout.sessions.create_async(params, _options(order))
        except stripe.APIConnectionError:
            raise UpstreamError("Stripe could not be reached; no Checkout Session was created.") from None
        except stripe.StripeError as exc:
            raise _refusal(exc) from None
        if not session.id or not session.url:
            raise UpstreamError("Stripe answered without a Checkout Session id or URL.")
        return CheckoutSession(session_id=session.id, checkout_url=session.url)

    def verify_event(self, payload: bytes, signature: str | None) -> Mapping[str, Any]:
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise InvalidEvent("The body is not a JSON Stripe event.") from None
        if not isinstance(parsed, dict) or parsed.get("object") != "event":
            raise InvalidEvent("The body is not a Stripe event object.")
        try:
            self._client.construct_event(payload, signature, self._webhook_secret, tolerance=TOLERANCE_S)
        except stripe.SignatureVerificationError as exc:
            raise InvalidEvent(_signature_fault(str(exc))) from None
        except ValueError:  # the body is not UTF-8 (the signature covers its text)
            raise InvalidEvent("The body is not a JSON Stripe event.") from None
        return parsed

    async def close(self) -> None:
        await self._session.close()


def _options(order: CheckoutOrder) -> RequestOptions:
    """Stripe's ``Idempotency-Key`` for the creation: the order's when the caller sent one (Stripe then answers a
    repeat with the first session), else none of ours (the library adds a random one that covers its retries)."""
    return {"idempotency_key": order.idempotency_key} if order.idempotency_key else {}


def _refusal(exc: stripe.StripeError) -> UpstreamError:
    """Stripe's refusal as our 502 with its status and its own message, key-shaped text removed."""
    status = exc.http_status
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return UpstreamError(
            f"Stripe returned HTTP {status}: it refused the configured secret key (TOLLWAY_STRIPE_SECRET_KEY).",
            upstream_status=status,
        )
    detail = _STRIPE_KEY_SHAPES.sub("[redacted]", exc.user_message or "")[:_MESSAGE_CHARS]
    message = f"Stripe returned HTTP {status}: {detail}" if detail else f"Stripe returned HTTP {status}."
    return UpstreamError(message, upstream_status=status)


def _signature_fault(detail: str) -> str:
    if "tolerance" in detail:
        return f"The Stripe-Signature timestamp is more than {TOLERANCE_S} s old."
    if "No Stripe-Signature header" in detail or "Unable to extract" in detail or "expected scheme" in detail:
        return "The Stripe-Signature header is missing or malformed."
    return "The Stripe-Signature header does not match the body."
