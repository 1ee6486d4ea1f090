"""Card top-up rules (SPEC §17.2) as pure functions, the Stripe settings, and the Stripe adapter's signature check
with the real ``stripe`` library against bodies signed here with Stripe's scheme."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tests.support.stripe_signing import signature
from tollway.domain.card_topups import Ignored, PaidCheckout, cents_of, paid_checkout
from tollway.domain.ports.payments import InvalidEvent
from tollway.errors import InvalidRequest
from tollway.observability.logs import Scrubber
from tollway.payments.stripe_checkout import StripeCheckout
from tollway.services.management.card_topups import ReturnUrls, parse_checkout
from tollway.settings import Settings, SettingsError, load_settings

PID = "3f1e2a9c-7b4d-4c1e-9a2b-5d6e7f8a9b0c"
SECRET = "whsec_" + "k" * 32


def _completed(**session: Any) -> dict[str, Any]:
    base = {
        "id": "cs_test_a1",
        "object": "checkout.session",
        "payment_status": "paid",
        "currency": "usd",
        "amount_total": 2599,
        "metadata": {"platform_id": PID},
    }
    base.update(session)
    return {"id": "evt_1", "object": "event", "type": "checkout.session.completed", "data": {"object": base}}


def test_a_paid_session_credits_its_amount_total_in_nanos() -> None:
    assert paid_checkout(_completed()) == PaidCheckout("cs_test_a1", PID, 25_990_000_000)
    assert paid_checkout(_completed(amount_total=1)) == PaidCheckout("cs_test_a1", PID, 10_000_000)


@pytest.mark.parametrize(
    "event",
    [
        {**_completed(), "type": "checkout.session.expired"},
        {**_completed(), "type": "payment_intent.succeeded"},
        {**_completed(), "type": None},
        {"type": "checkout.session.completed"},
        {"type": "checkout.session.completed", "data": {"object": "cs_1"}},
        _completed(id=None),
        _completed(id="x" * 256),
        _completed(payment_status="unpaid"),
        _completed(payment_status="no_payment_required"),
        _completed(currency="eur"),
        _completed(amount_total=0),
        _completed(amount_total=-5),
        _completed(amount_total=25.99),
        _completed(amount_total="2599"),
        _completed(amount_total=True),
        _completed(metadata={}),
        _completed(metadata=None),
        _completed(metadata={"platform_id": 7}),
    ],
)
def test_other_events_and_unusable_sessions_are_ignored(event: dict[str, Any]) -> None:
    outcome = paid_checkout(event)
    assert isinstance(outcome, Ignored) and outcome.reason


def test_cents() -> None:
    assert cents_of(5_000_000_000) == 500
    assert cents_of(12_340_000_000) == 1234
    assert cents_of(12_345_000_000) is None


def test_checkout_body_and_default_return_urls() -> None:
    order = parse_checkout(PID, {"amount_usd": Decimal("12.5"), "success_url": "https://a.example/s",
                                 "cancel_url": "http://localhost:8080/c"}, ReturnUrls())  # fmt: skip
    assert (order.platform_id, order.amount_cents) == (PID, 1250)
    assert (order.success_url, order.cancel_url) == ("https://a.example/s", "http://localhost:8080/c")
    with pytest.raises(InvalidRequest) as missing:
        parse_checkout(PID, {"amount_usd": "20"}, ReturnUrls())
    assert missing.value.param == "success_url"
    defaults = ReturnUrls("https://gw.example/console/wallet?paid=1", "https://gw.example/console/wallet")
    defaulted = parse_checkout(PID, {"amount_usd": "20"}, defaults)
    assert (defaulted.success_url, defaulted.cancel_url) == (defaults.success_url, defaults.cancel_url)
    assert ReturnUrls.under(None) == ReturnUrls()
    console = ReturnUrls.under("https://gw.example/base/")
    assert (
        console.success_url == "https://gw.example/base/console/wallet?checkout=paid&session_id={CHECKOUT_SESSION_ID}"
    )
    assert console.cancel_url == "https://gw.example/base/console/wallet?checkout=cancelled"
    with pytest.raises(InvalidRequest) as bad:
        parse_checkout(PID, {"amount_usd": "20", "success_url": "https://[::1/"}, defaults)
    assert bad.value.param == "success_url"


def test_stripe_settings() -> None:
    assert not Settings().stripe_enabled
    assert not Settings(stripe_secret_key="sk_test_1").stripe_enabled
    on = Settings(stripe_secret_key="sk_test_abc", stripe_webhook_secret=SECRET, stripe_api_base="http://127.0.0.1:9/")
    assert on.stripe_enabled and on.stripe_api_base == "http://127.0.0.1:9"
    assert "sk_test_abc" not in repr(on) and SECRET not in repr(on)
    assert Settings(stripe_secret_key="", stripe_webhook_secret=SECRET).stripe_secret_key is None
    with pytest.raises(SettingsError, match="TOLLWAY_STRIPE_API_BASE"):
        load_settings(stripe_api_base="ftp://stripe.example")
    with pytest.raises(SettingsError, match="TOLLWAY_STRIPE_SECRET_KEY") as spaced:
        load_settings(stripe_secret_key="sk_live_abc def")
    assert "abc def" not in str(spaced.value)


def test_log_lines_lose_stripe_keys() -> None:
    scrub = Scrubber(["rk_live_literal0000"])
    line = scrub("key sk_live_4eC39HqLyjWDarjtT1zdp7dc and sk_test_abcdefgh and rk_live_literal0000 and whsec_abcdefgh")
    assert "4eC39" not in line and "sk_test_abcdefgh" not in line and "literal" not in line and "whsec_abc" not in line


async def test_the_adapter_verifies_stripe_signatures_with_a_300_s_tolerance() -> None:
    gateway = StripeCheckout("sk_test_abc", SECRET, api_base="http://127.0.0.1:9", timeout_s=5)
    try:
        payload = orjson.dumps(_completed())
        assert gateway.verify_event(payload, signature(payload, SECRET)) == orjson.loads(payload)
        assert gateway.verify_event(payload, signature(payload, SECRET, int(time.time()) - 290))["id"] == "evt_1"
        # several v1 signatures (Stripe sends one per active secret while one is rolled): any match will do
        both = signature(payload, "whsec_other") + "," + signature(payload, SECRET).split(",", 1)[1]
        assert gateway.verify_event(payload, both)["id"] == "evt_1"
        refused = {
            "stale": signature(payload, SECRET, int(time.time()) - 301),
            "other secret": signature(payload, "whsec_other"),
            "missing": None,
            "empty": "",
            "garbled": "t=x,v1=y",
        }
        for name, header in refused.items():
            with pytest.raises(InvalidEvent) as caught:
                gateway.verify_event(payload, header)
            assert SECRET not in str(caught.value), name
        for body in (b"{", b"[]", b'{"object": "charge"}', b'{"object": "event", "x": "\xff"}'):
            with pytest.raises(InvalidEvent):
                gateway.verify_event(body, signature(body, SECRET))
    finally:
        await gateway.close()
