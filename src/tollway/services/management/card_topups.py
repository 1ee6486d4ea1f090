"""Wallet top-ups by card (SPEC §17.2): a platform opens a Stripe Checkout Session for an amount; Stripe's signed
``checkout.session.completed`` webhook then credits the wallet through the same credit as the operator top-up
(``WalletLedger.credit``: the ``topup`` row and its ``wallet.topped_up`` event), exactly once per session: the
session's claim commits in the credit's transaction, so redeliveries and concurrent deliveries to several instances
credit nothing more. Off (404) unless both Stripe secrets are configured."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import urlsplit

from tollway.domain import fields as f
from tollway.domain.bodies import USD_STRING, Body, Custom, Field
from tollway.domain.card_topups import (
    MAX_TOPUP_NANOS,
    MIN_TOPUP_NANOS,
    CheckoutOrder,
    CheckoutSession,
    Ignored,
    PaidCheckout,
    cents_of,
    paid_checkout,
)
from tollway.domain.clock import utcnow
from tollway.domain.conflicts import BalanceOverflow
from tollway.domain.ports.management import UnitOfWorkFactory
from tollway.domain.ports.payments import InvalidEvent, PaymentGateway
from tollway.errors import InvalidRequest, NotFound
from tollway.services.management.idempotency import IdempotentRequest

log = logging.getLogger("tollway.card_topups")

URL_MAX: Final = 2048
DESCRIPTION: Final = "Card top-up (Stripe Checkout)"
STRIPE_KEY_PURPOSE: Final = "tollway-checkout"  # Stripe's Idempotency-Key: this, a dash, 64 hex digits (≤ 255)
NOT_CONFIGURED: Final = (
    "Card top-ups are not enabled on this gateway: the operator sets TOLLWAY_STRIPE_SECRET_KEY and "
    "TOLLWAY_STRIPE_WEBHOOK_SECRET to turn them on."
)


@dataclass(frozen=True, slots=True)
class ReturnUrls:
    """Where the payer's browser goes after paying or cancelling when the request names no URL; None makes the
    field required (no public URL of the gateway is configured to build one from)."""

    success_url: str | None = None
    cancel_url: str | None = None

    @classmethod
    def under(cls, public_url: str | None) -> ReturnUrls:
        """The console's wallet page under the gateway's public URL (``TOLLWAY_PUBLIC_URL``), when one is set."""
        if not public_url:
            return cls()
        page = public_url.rstrip("/") + "/console/wallet"
        return cls(page + "?checkout=paid&session_id={CHECKOUT_SESSION_ID}", page + "?checkout=cancelled")


def _return_url(body: Mapping[str, Any], name: str, default: str | None) -> str:
    value: str | None = CHECKOUT_BODY.read(body, name)
    if value is None:
        if default is None:
            raise InvalidRequest(f"{name} is required: the absolute http(s) URL the payer returns to.", name)
        return default
    return value


def _url_text(value: object, name: str) -> str:
    text = f.as_str(value, name, max_len=URL_MAX)
    if not _absolute_http_url(text):
        raise InvalidRequest(f"{name} must be an absolute http or https URL without credentials.", name)
    return text


def _amount(value: object, param: str) -> int:
    amount = f.as_usd(value, param)
    if not MIN_TOPUP_NANOS <= amount <= MAX_TOPUP_NANOS:
        raise InvalidRequest("amount_usd must be between 5 and 10000 USD.", param)
    if cents_of(amount) is None:
        raise InvalidRequest("amount_usd must be a whole number of cents (at most 2 decimals).", param)
    return amount


_RETURN_URL: Final = Custom({"type": "string", "format": "uri", "maxLength": URL_MAX}, _url_text)
_RETURN_NOTE: Final = "Absent or null: the console's wallet page under TOLLWAY_PUBLIC_URL (required without one)."
CHECKOUT_BODY: Final = Body(
    Field(
        "amount_usd",
        Custom(
            {
                "oneOf": [
                    {"type": "number", "minimum": MIN_TOPUP_NANOS // 10**9, "maximum": MAX_TOPUP_NANOS // 10**9},
                    {"type": "string", "pattern": USD_STRING},
                ]
            },
            _amount,
        ),
        required=True,
        description="5 to 10,000 USD in whole cents (SPEC §17.2).",
    ),
    Field("success_url", _RETURN_URL, nullable=True, description=_RETURN_NOTE),
    Field("cancel_url", _RETURN_URL, nullable=True, description=_RETURN_NOTE),
)


def _absolute_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        if any(ch.isspace() for ch in text) or parts.username or parts.password:
            return False
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a malformed port or IPv6 literal
        return False


def parse_checkout(platform_id: str, body: Mapping[str, Any], defaults: ReturnUrls) -> CheckoutOrder:
    """``{amount_usd (5–10,000, whole cents), success_url?, cancel_url?}`` (§17.2; amounts as §9.1)."""
    CHECKOUT_BODY.check(body)
    cents = cents_of(CHECKOUT_BODY.read(body, "amount_usd"))
    assert cents is not None  # _amount refuses fractions of a cent
    success = _return_url(body, "success_url", defaults.success_url)
    cancel = _return_url(body, "cancel_url", defaults.cancel_url)
    return CheckoutOrder(platform_id, cents, success, cancel)


class CardTopups:
    def __init__(
        self, gateway: PaymentGateway | None, unit_of_work: UnitOfWorkFactory, defaults: ReturnUrls = ReturnUrls()
    ) -> None:
        """``gateway`` is None when Stripe is not configured: both routes then answer 404 ``not_found``."""
        self._gateway = gateway
        self._uow = unit_of_work
        self._defaults = defaults

    def enabled(self) -> PaymentGateway:
        if self._gateway is None:
            raise NotFound(NOT_CONFIGURED)
        return self._gateway

    def order(self, platform_id: str, body: Mapping[str, Any]) -> CheckoutOrder:
        """The validated checkout request (400 naming the field), before any Idempotency-Key is looked at (§9.7)."""
        self.enabled()
        return parse_checkout(platform_id, body, self._defaults)

    async def open(self, order: CheckoutOrder, key: IdempotentRequest | None = None) -> CheckoutSession:
        """Opens a Checkout Session for the caller's own (live) platform; nothing is credited until Stripe says
        the session was paid. Under an Idempotency-Key, Stripe gets a key derived from it, so a retry of the same
        request (after a lost answer or a crash) is answered with the same session, never a second one."""
        gateway = self.enabled()
        if key is not None:
            order = replace(order, idempotency_key=key.derived_key(STRIPE_KEY_PURPOSE))
        return await gateway.create_checkout(order)

    async def receive(self, payload: bytes, signature: str | None, request_id: str | None) -> None:
        """A Stripe webhook delivery: 400 (``InvalidRequest`` at ``Stripe-Signature``) unless it is signed and
        recent; otherwise acknowledged, crediting the wallet only for a paid session not credited before."""
        gateway = self.enabled()
        try:
            event = gateway.verify_event(payload, signature)
        except InvalidEvent as exc:
            raise InvalidRequest(str(exc), "Stripe-Signature") from None
        outcome = paid_checkout(event)
        if isinstance(outcome, Ignored):
            log.info(
                "stripe event ignored: %s",
                outcome.reason,
                extra={"stripe_event_type": str(event.get("type"))[:100], "stripe_session_id": outcome.session_id},
            )
            return
        await self._credit(outcome, request_id)

    async def _credit(self, paid: PaidCheckout, request_id: str | None) -> None:
        context = {"stripe_session_id": paid.session_id, "target_platform_id": paid.platform_id}
        async with self._uow() as uow:
            if not await uow.card_payments.claim(paid.session_id, paid.platform_id, paid.amount_nanos, utcnow()):
                log.info("stripe session already credited", extra=context)
                return
            try:
                credited = await uow.wallets.credit(
                    paid.platform_id,
                    paid.amount_nanos,
                    description=DESCRIPTION,
                    metadata={"stripe_session_id": paid.session_id},
                    request_id=request_id,
                )
            except BalanceOverflow:
                log.error("stripe payment not credited: the wallet balance would overflow", extra=context)
                return
            if credited is None:
                # Stripe stops redelivering on a 2xx; the log line is how an operator finds the payment to refund.
                log.warning("stripe payment not credited: no live platform with this id", extra=context)
                return
            await uow.commit()
        log.info("wallet credited by card", extra={**context, "amount_nanos": paid.amount_nanos})
