"""The card payment gateway the top-up use case needs (SPEC §17.2): creating a Checkout Session, and reading a
webhook event only after its signature has been verified. The Stripe adapter (``tollway.payments``) implements it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from tollway.domain.card_topups import CheckoutOrder, CheckoutSession


class InvalidEvent(Exception):
    """The webhook's signature is missing, wrong or too old, or its body is not a JSON event; nothing may change.
    The message says which, never echoing the secret."""


class PaymentGateway(Protocol):
    async def create_checkout(self, order: CheckoutOrder) -> CheckoutSession:
        """A Checkout Session in payment mode for the order; ``UpstreamError`` when the gateway fails."""
        ...

    def verify_event(self, payload: bytes, signature: str | None) -> Mapping[str, Any]:
        """The event, once ``signature`` (the ``Stripe-Signature`` header) proves ``payload`` is the gateway's and
        recent (300 s); ``InvalidEvent`` otherwise."""
        ...

    async def close(self) -> None: ...
