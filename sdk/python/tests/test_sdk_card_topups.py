"""Adding funds by card (SPEC §17.2) through the SDK: a Checkout Session from ``wallet.create_checkout``, and the
wallet credited once when Stripe reports the payment (delivered here as Stripe would, signed)."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import pytest

from conftest import STRIPE_WEBHOOK_SECRET, Tenant
from tollway_sdk import IdempotencyKeyMismatchError, InvalidRequestError
from tollway_sdk.types import CheckoutSession

from tests.support.fake_stripe import FakeStripe
from tests.support.stripe_signing import signed


def test_checkout_then_paid_credits_the_wallet_once(tenant: Tenant, fake_stripe: FakeStripe, gateway_url: str) -> None:
    session = tenant.client.platform.wallet.create_checkout(
        amount_usd="20", success_url="https://acme.example/paid", cancel_url="https://acme.example/cancel"
    )
    assert isinstance(session, CheckoutSession)
    assert session.checkout_url.startswith("http") and session.session_id
    payload, headers = signed(fake_stripe.completed_event(session.session_id), STRIPE_WEBHOOK_SECRET)
    for _ in range(2):  # Stripe redelivers; the wallet is credited once
        answer = httpx.post(gateway_url + "/v1/stripe/webhook", content=payload, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 10
    while tenant.client.platform.wallet.retrieve().balance_usd == 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tenant.client.platform.wallet.retrieve().balance_usd == Decimal(30)
    topups = list(tenant.client.platform.wallet.list_transactions(type="topup"))
    assert [t.amount_usd for t in topups] == [Decimal(20), Decimal(10)]
    assert topups[0].metadata == {"stripe_session_id": session.session_id}


def test_checkout_amount_rules_name_the_field(tenant: Tenant) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        tenant.client.platform.wallet.create_checkout(amount_usd="4.99")
    assert caught.value.param == "amount_usd"


def test_checkout_under_one_idempotency_key_opens_one_session(tenant: Tenant) -> None:
    wallet = tenant.client.platform.wallet
    first = wallet.create_checkout(amount_usd="20", idempotency_key="checkout-retry-1")
    again = wallet.create_checkout(amount_usd="20", idempotency_key="checkout-retry-1")
    other = wallet.create_checkout(amount_usd="20")
    assert again.session_id == first.session_id and again.checkout_url == first.checkout_url
    assert other.session_id != first.session_id
    with pytest.raises(IdempotencyKeyMismatchError):  # the same key with another body (SPEC §9.7)
        wallet.create_checkout(amount_usd="25", idempotency_key="checkout-retry-1")
