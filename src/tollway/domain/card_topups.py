"""Wallet top-ups by card (SPEC §17.2), as pure rules: the amounts a Checkout Session may ask for, and which Stripe
events credit a wallet. A paid ``checkout.session.completed`` credits the session's ``amount_total`` (what the payer
was actually charged), never the amount the checkout request asked for; everything else is acknowledged and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from tollway.domain.money import NANOS_PER_USD

NANOS_PER_CENT: Final = NANOS_PER_USD // 100
MIN_TOPUP_NANOS: Final = 5 * NANOS_PER_USD
MAX_TOPUP_NANOS: Final = 10_000 * NANOS_PER_USD
CURRENCY: Final = "usd"
COMPLETED: Final = "checkout.session.completed"
SESSION_ID_MAX: Final = 255  # Stripe's ids are far shorter; the claim table's column is this wide


@dataclass(frozen=True, slots=True)
class CheckoutOrder:
    """What a platform asks Stripe to charge: whole cents, and where the payer's browser returns."""

    platform_id: str
    amount_cents: int
    success_url: str
    cancel_url: str
    # The gateway's own idempotency key for this creation, derived from the caller's Idempotency-Key (SPEC §9.7) so
    # that a retried request never opens a second session; None: the gateway library's key for its own retries.
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    session_id: str
    checkout_url: str


@dataclass(frozen=True, slots=True)
class PaidCheckout:
    """A completed, paid session: the wallet to credit and by how much."""

    session_id: str
    platform_id: str
    amount_nanos: int


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event that credits nothing (acknowledged with 200 so that Stripe stops sending it), and why."""

    reason: str
    session_id: str | None = None


def cents_of(amount_nanos: int) -> int | None:
    """The amount in whole cents, or None when it has a fraction of a cent (Stripe charges whole cents)."""
    cents, rest = divmod(amount_nanos, NANOS_PER_CENT)
    return None if rest else cents


def paid_checkout(event: Mapping[str, Any]) -> PaidCheckout | Ignored:
    """Reads a verified Stripe event. Only ``checkout.session.completed`` with ``payment_status: "paid"`` in USD,
    with a positive integer ``amount_total`` and the platform in its metadata, credits a wallet."""
    event_type = event.get("type")
    if event_type != COMPLETED:
        return Ignored(f"event type {str(event_type)[:100]!r} is not handled")
    data = event.get("data")
    session = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(session, Mapping):
        return Ignored("the event carries no session object")
    session_id = session.get("id")
    if not isinstance(session_id, str) or not 0 < len(session_id) <= SESSION_ID_MAX:
        return Ignored("the session has no usable id")
    if session.get("payment_status") != "paid":
        return Ignored(f"payment_status is {str(session.get('payment_status'))[:40]!r}, not 'paid'", session_id)
    if session.get("currency") != CURRENCY:
        return Ignored(f"currency is {str(session.get('currency'))[:10]!r}, not 'usd'", session_id)
    amount = session.get("amount_total")
    if type(amount) is not int or amount <= 0:
        return Ignored("amount_total is not a positive integer of cents", session_id)
    metadata = session.get("metadata")
    platform_id = metadata.get("platform_id") if isinstance(metadata, Mapping) else None
    if not isinstance(platform_id, str) or not platform_id:
        return Ignored("the session's metadata names no platform", session_id)
    return PaidCheckout(session_id, platform_id, amount * NANOS_PER_CENT)
