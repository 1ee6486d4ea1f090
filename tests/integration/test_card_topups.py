"""Card top-ups with Stripe Checkout (SPEC §17.2), against a fake Stripe API that the official ``stripe`` library is
pointed at, with webhook events signed with Stripe's real scheme: a checkout session is created as asked; a paid
completion credits the wallet once with the session's ``amount_total`` and emits ``wallet.topped_up``; redeliveries
and concurrent deliveries credit nothing more; a bad, stale or missing signature or a malformed body is a 400 that
changes nothing; other events are acknowledged and ignored; without Stripe settings both routes are 404."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import pytest

from tests.conftest import STORES, database_url_for, make_settings
from tests.support.canary import WATCH
from tests.support.fake_stripe import FakeStripe, event
from tests.support.invariants import assert_invariants, count
from tests.support.processes import GatewayProcess
from tests.support.redis_server import start_redis_or_skip
from tests.support.servers import GatewayServer, PostgresServer, free_port, running_gateway
from tests.support.stripe_signing import signature, signed
from tests.support.webhook_receiver import WebhookReceiver
from tollway.payments.stripe_checkout import StripeCheckout
from tollway.services.management.card_topups import CardTopups
from tollway.services.management.idempotency import idempotent_request
from tollway.settings import Settings
from tollway.storage.sql.tables import card_payments, wallet_transactions

WEBHOOK = "/v1/stripe/webhook"
RETURN = {"success_url": "https://acme.example/paid?s={CHECKOUT_SESSION_ID}", "cancel_url": "https://acme.example/c"}


def stripe_secrets() -> tuple[str, str]:
    """A secret key and a webhook secret of Stripe's shapes, remembered by the suite's canary (never to be seen)."""
    secret_key = "sk_test_" + secrets.token_urlsafe(24).replace("-", "a").replace("_", "b")
    webhook_secret = "whsec_" + secrets.token_urlsafe(24).replace("-", "a").replace("_", "b")
    WATCH.remember(secret_key)
    WATCH.remember(webhook_secret)
    return secret_key, webhook_secret


@dataclass
class Platform:
    id: str
    client: httpx.Client

    def checkout(self, **body: Any) -> httpx.Response:
        return self.client.post(f"/v1/platforms/{self.id}/wallet/checkout", json=body)

    def balance(self) -> Decimal:
        wallet = self.client.get(f"/v1/platforms/{self.id}/wallet")
        assert wallet.status_code == 200, wallet.text
        return Decimal(str(wallet.json()["balance_usd"]))

    def topups(self) -> list[dict[str, Any]]:
        rows = self.client.get(f"/v1/platforms/{self.id}/wallet/transactions", params={"type": "topup"})
        assert rows.status_code == 200, rows.text
        return list(rows.json()["data"])


@dataclass
class StripeSetup:
    gateway: GatewayServer
    fake: FakeStripe
    admin: httpx.Client
    webhook_secret: str
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.gateway.settings

    def platform(self) -> Platform:
        made = new_platform(self.admin, self.gateway.url)
        self.clients.append(made.client)
        return made

    def deliver(self, body: Any, at: int | None = None, secret: str | None = None) -> httpx.Response:
        payload, headers = signed(body, secret or self.webhook_secret, at)
        return httpx.post(self.gateway.url + WEBHOOK, content=payload, headers=headers, timeout=30)

    def paid_session(self, platform: Platform, amount_usd: str = "20") -> str:
        created = platform.checkout(amount_usd=amount_usd, **RETURN)
        assert created.status_code == 201, created.text
        return str(created.json()["session_id"])


def new_platform(admin: httpx.Client, url: str) -> Platform:
    created = admin.post("/v1/admin/platforms", json={"name": f"Card {secrets.token_hex(3)}"})
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["api_key"]["raw_key"]
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Platform(body["platform"]["id"], client)


def stripe_settings(tmp: Path, database_url: str, fake: FakeStripe, webhook_secret: str, **extra: Any) -> Settings:
    return make_settings(
        tmp,
        database_url,
        stripe_secret_key=fake.secret_key,
        stripe_webhook_secret=webhook_secret,
        stripe_api_base=fake.url,
        **extra,
    )


@pytest.fixture(scope="module", params=STORES)
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StripeSetup]:
    tmp = tmp_path_factory.mktemp("card")
    secret_key, webhook_secret = stripe_secrets()
    fake = FakeStripe(secret_key).start()
    settings = stripe_settings(tmp, database_url_for(request.param, tmp, request), fake, webhook_secret)
    try:
        with (
            running_gateway(settings) as gateway,
            httpx.Client(
                base_url=gateway.url, headers={"Authorization": f"Bearer {settings.admin_key}"}, timeout=30
            ) as admin,
        ):
            made = StripeSetup(gateway, fake, admin, webhook_secret)
            yield made
            for client in made.clients:
                client.close()
    finally:
        fake.stop()


# -- creating a Checkout Session -------------------------------------------------------------------------------


def test_checkout_creates_a_payment_session_for_the_platform(setup: StripeSetup) -> None:
    platform = setup.platform()
    before = len(setup.fake.received())
    created = platform.checkout(amount_usd="12.34", **RETURN)
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"checkout_url", "session_id"}
    assert body["session_id"].startswith("cs_test_")
    assert body["checkout_url"] == setup.fake.sessions[body["session_id"]]["url"]
    calls = setup.fake.received()[before:]
    assert len(calls) == 1
    call = calls[0]
    assert call.path == "/v1/checkout/sessions"
    assert call.headers["Authorization"] == f"Bearer {setup.fake.secret_key}"
    assert call.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert call.form["mode"] == "payment"
    assert call.form["line_items[0][quantity]"] == "1"
    assert call.form["line_items[0][price_data][currency]"] == "usd"
    assert call.form["line_items[0][price_data][unit_amount]"] == "1234"  # cents
    assert call.form["line_items[0][price_data][product_data][name]"]
    assert call.form["metadata[platform_id]"] == platform.id
    assert call.form["client_reference_id"] == platform.id
    assert call.form["success_url"] == RETURN["success_url"]
    assert call.form["cancel_url"] == RETURN["cancel_url"]
    assert call.form["allowed_payment_method_types[0]"] == "card"
    # nothing is credited until Stripe says the session was paid
    assert platform.balance() == 0 and platform.topups() == []
    # the bounds are inclusive, and a JSON number is read exactly
    assert platform.checkout(amount_usd=5, **RETURN).status_code == 201
    exact = b'{"amount_usd": 1.000000e4, "success_url": "https://a.example/s", "cancel_url": "https://a.example/c"}'
    big = platform.client.post(
        f"/v1/platforms/{platform.id}/wallet/checkout", content=exact, headers={"Content-Type": "application/json"}
    )
    assert big.status_code == 201, big.text
    assert setup.fake.received()[-1].form["line_items[0][price_data][unit_amount]"] == "1000000"
    # without return URLs the payer comes back to the console's wallet page under the gateway's public URL
    assert platform.checkout(amount_usd="20", cancel_url=RETURN["cancel_url"]).status_code == 201
    page = setup.gateway.settings.public_base_url + "/console/wallet"
    form = setup.fake.received()[-1].form
    assert form["success_url"] == page + "?checkout=paid&session_id={CHECKOUT_SESSION_ID}"
    assert form["cancel_url"] == RETURN["cancel_url"]
    assert platform.checkout(amount_usd="20").status_code == 201
    assert setup.fake.received()[-1].form["cancel_url"] == page + "?checkout=cancelled"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "amount_usd"),
        ({"amount_usd": "4.99"}, "amount_usd"),
        ({"amount_usd": "10000.01"}, "amount_usd"),
        ({"amount_usd": "12.345"}, "amount_usd"),  # a fraction of a cent
        ({"amount_usd": -20}, "amount_usd"),
        ({"amount_usd": True}, "amount_usd"),
        ({"amount_usd": None}, "amount_usd"),
        ({"amount_usd": "twenty"}, "amount_usd"),
        ({"amount_usd": "20", **RETURN, "success_url": "/console/wallet"}, "success_url"),
        ({"amount_usd": "20", **RETURN, "success_url": "ftp://acme.example/x"}, "success_url"),
        ({"amount_usd": "20", **RETURN, "cancel_url": "https://user:pw@acme.example/"}, "cancel_url"),
        ({"amount_usd": "20", **RETURN, "cancel_url": "https://acme.example/a b"}, "cancel_url"),
        ({"amount_usd": "20", **RETURN, "cancel_url": 7}, "cancel_url"),
        ({"amount_usd": "20", **RETURN, "success_url": "https://a.example/" + "x" * 2048}, "success_url"),
        ({"amount_usd": "20", **RETURN, "currency": "eur"}, "currency"),
        ({"amount_usd": "20", **RETURN, "platform_id": "x"}, "platform_id"),
    ],
)
def test_checkout_validation_names_the_field_and_calls_nobody(
    setup: StripeSetup, body: dict[str, Any], param: str
) -> None:
    platform = setup.platform()
    before = len(setup.fake.received())
    refused = platform.client.post(f"/v1/platforms/{platform.id}/wallet/checkout", json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "invalid_request"
    assert refused.json()["error"]["param"] == param
    assert len(setup.fake.received()) == before


def test_checkout_is_for_the_platforms_own_manage_key(setup: StripeSetup) -> None:
    mine, other = setup.platform(), setup.platform()
    foreign = mine.client.post(f"/v1/platforms/{other.id}/wallet/checkout", json={"amount_usd": "20", **RETURN})
    assert foreign.status_code == 404
    anonymous = httpx.post(f"{setup.gateway.url}/v1/platforms/{mine.id}/wallet/checkout", json={"amount_usd": "20"})
    assert anonymous.status_code == 401
    operator = setup.admin.post(f"/v1/platforms/{mine.id}/wallet/checkout", json={"amount_usd": "20", **RETURN})
    assert operator.status_code == 403 and operator.json()["error"]["code"] == "wrong_key_type"


def test_a_stripe_refusal_is_a_502_that_names_no_secret(setup: StripeSetup) -> None:
    platform = setup.platform()
    setup.fake.refuse_with = 500
    try:
        failed = platform.checkout(amount_usd="20", **RETURN)
    finally:
        setup.fake.refuse_with = None
    assert failed.status_code == 502, failed.text
    error = failed.json()["error"]
    assert error["code"] == "upstream_error"
    assert error["message"].startswith("Stripe returned HTTP 500")
    assert setup.fake.secret_key not in failed.text and setup.webhook_secret not in failed.text


# -- Idempotency-Key (SPEC §9.7) --------------------------------------------------------------------------------


def _keyed(platform: Platform, key: str, content: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    return platform.client.post(f"/v1/platforms/{platform.id}/wallet/checkout", content=content, headers=headers)


BODY = orjson.dumps({"amount_usd": "20", **RETURN})
# the same body formatted otherwise (key order, spaces): the same request under §9.7's fingerprint
SAME_BODY = b'{ "cancel_url": "%s", "success_url": "%s", "amount_usd": "20" }' % (
    RETURN["cancel_url"].encode(),
    RETURN["success_url"].encode(),
)


def test_a_repeated_idempotency_key_replays_the_first_session(setup: StripeSetup) -> None:
    platform, other = setup.platform(), setup.platform()
    key = "checkout-" + secrets.token_hex(8)
    before = len(setup.fake.received())
    first = _keyed(platform, key, BODY)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = _keyed(platform, key, SAME_BODY)
    assert again.status_code == 201, again.text
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    calls = setup.fake.received()[before:]
    assert len(calls) == 1  # the repeat never reached Stripe
    # Stripe gets a key of its own for the creation, derived from ours (never ours as such)
    stripe_key = calls[0].headers["Idempotency-Key"]
    assert stripe_key.startswith("tollway-checkout-") and key not in stripe_key
    # another body under the same key: 422, and nothing asked of Stripe
    changed = _keyed(platform, key, orjson.dumps({"amount_usd": "21", **RETURN}))
    assert changed.status_code == 422, changed.text
    assert changed.json()["error"]["code"] == "idempotency_key_mismatch"
    assert changed.json()["error"]["param"] == "Idempotency-Key"
    # the same key and body on another platform is that platform's request: its own session under its own key
    theirs = _keyed(other, key, BODY)
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["session_id"] != first.json()["session_id"]
    calls = setup.fake.received()[before:]
    assert len(calls) == 2 and calls[1].headers["Idempotency-Key"] != stripe_key
    # a malformed key is a 400 at the header before Stripe is called; without a key each request is a new session
    bad = _keyed(platform, "k" * 256, BODY)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "Idempotency-Key"
    assert len(setup.fake.received()) == before + 2
    unkeyed = [platform.checkout(amount_usd="20", **RETURN).json()["session_id"] for _ in range(2)]
    assert unkeyed[0] != unkeyed[1]
    assert platform.balance() == 0 and platform.topups() == []


def test_a_key_whose_first_request_still_runs_is_409(setup: StripeSetup) -> None:
    platform = setup.platform()
    key = "slow-" + secrets.token_hex(8)
    before = len(setup.fake.received())
    setup.fake.answering.clear()  # Stripe creates the session but holds its answer
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(_keyed, platform, key, BODY)
            deadline = time.monotonic() + 30
            while len(setup.fake.received()) == before:
                assert time.monotonic() < deadline, "the first request never reached Stripe"
                time.sleep(0.02)
            running = _keyed(platform, key, BODY)
            setup.fake.answering.set()
            answered = first.result(60)
    finally:
        setup.fake.answering.set()
    assert running.status_code == 409, running.text
    assert running.json()["error"]["code"] == "idempotency_in_progress"
    assert running.json()["error"]["param"] == "Idempotency-Key"
    assert answered.status_code == 201, answered.text
    replayed = _keyed(platform, key, BODY)
    assert replayed.content == answered.content and replayed.headers["idempotent-replayed"] == "true"
    assert len(setup.fake.received()) == before + 1


async def test_a_retry_under_the_same_key_opens_no_second_session_at_stripe(setup: StripeSetup) -> None:
    """What a retry does after a crash between Stripe's answer and storing it (the key's claim is given up when its
    lease ends, and the retry calls Stripe again): Stripe is asked under the same derived key and answers with the
    first session, so the payer is never offered two."""
    fake = setup.fake
    stripe = StripeCheckout(fake.secret_key, setup.webhook_secret, api_base=fake.url, timeout_s=30)
    topups = CardTopups(stripe, unit_of_work=None)  # type: ignore[arg-type]  # opening a session writes no row
    platform_id = str(uuid.uuid4())
    path = f"/v1/platforms/{platform_id}/wallet/checkout"
    body = {"amount_usd": "20", **RETURN}
    try:
        order = topups.order(platform_id, body)
        sessions = [
            await topups.open(order, idempotent_request(platform_id, "POST", path, "retried", body)) for _ in range(2)
        ]
    finally:
        await stripe.close()
    assert sessions[0] == sessions[1]
    assert sum(1 for s in fake.sessions.values() if s["client_reference_id"] == platform_id) == 1


# -- the webhook ------------------------------------------------------------------------------------------------


def _subscribe(platform: Platform, receiver: WebhookReceiver) -> str:
    created = platform.client.post(
        f"/v1/platforms/{platform.id}/webhooks", json={"url": receiver.url, "events": ["wallet.topped_up"]}
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _deliveries(platform: Platform, endpoint_id: str) -> list[dict[str, Any]]:
    listed = platform.client.get(f"/v1/platforms/{platform.id}/webhooks/{endpoint_id}/deliveries")
    assert listed.status_code == 200, listed.text
    return list(listed.json()["data"])


def test_a_paid_session_credits_its_amount_total_once_and_emits_wallet_topped_up(setup: StripeSetup) -> None:
    platform = setup.platform()
    receiver = WebhookReceiver().start()
    try:
        endpoint_id = _subscribe(platform, receiver)
        session_id = setup.paid_session(platform, amount_usd="20")
        # Stripe charged 19.99 (say, a coupon): the amount credited is the session's, not the request's.
        completed = setup.fake.completed_event(session_id, amount_total=1999)
        first = setup.deliver(completed)
        assert first.status_code == 200, first.text
        assert platform.balance() == Decimal("19.99")
        rows = platform.topups()
        assert len(rows) == 1
        row = rows[0]
        assert row["type"] == "topup"
        assert Decimal(str(row["amount_usd"])) == Decimal("19.99")
        assert Decimal(str(row["balance_usd_after"])) == Decimal("19.99")
        assert row["metadata"] == {"stripe_session_id": session_id}
        assert row["request_id"] == first.headers["x-request-id"]

        # Stripe redelivers the same event, later, and sends a second event about the same session
        assert setup.deliver(completed).status_code == 200
        assert setup.deliver(completed, at=int(time.time()) - 250).status_code == 200
        assert setup.deliver(setup.fake.completed_event(session_id, amount_total=1999)).status_code == 200
        assert platform.balance() == Decimal("19.99")
        assert len(platform.topups()) == 1

        # one event in the outbox, one delivery, and its payload is the ledger row (SPEC §11.2)
        deliveries = _deliveries(platform, endpoint_id)
        assert [d["event_type"] for d in deliveries] == ["wallet.topped_up"]
        assert deliveries[0]["event_id"] == f"{row['id']}:wallet.topped_up"
        got = receiver.wait_for(lambda r: len(r) >= 1, timeout=15)
        envelope = got[0].json()
        assert envelope["event_type"] == "wallet.topped_up"
        assert envelope["event_id"] == f"{row['id']}:wallet.topped_up"
        data = envelope["data"]
        assert data["platform_id"] == platform.id and data["transaction_id"] == row["id"]
        assert data["type"] == "topup"
        assert Decimal(str(data["amount_usd"])) == Decimal("19.99")
        assert Decimal(str(data["balance_usd_after"])) == Decimal("19.99")
    finally:
        receiver.stop()
    assert count(setup.settings, card_payments, card_payments.c.session_id == session_id) == 1
    assert_invariants(setup.settings)


def _concurrently(urls: list[str], payload: bytes, headers: dict[str, str]) -> list[int]:
    async def fire() -> list[int]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def one(url: str) -> int:
                async with session.post(url + WEBHOOK, data=payload, headers=headers) as response:
                    await response.read()
                    return response.status

            return list(await asyncio.gather(*(one(url) for url in urls)))

    return asyncio.run(fire())


def test_concurrent_deliveries_of_one_event_credit_once(setup: StripeSetup) -> None:
    platform = setup.platform()
    sessions = [setup.paid_session(platform, amount_usd="5.01") for _ in range(3)]
    for session_id in sessions:
        payload, headers = signed(setup.fake.completed_event(session_id), setup.webhook_secret)
        statuses = _concurrently([setup.gateway.url] * 8, payload, headers)
        assert statuses == [200] * 8
    assert platform.balance() == Decimal("15.03")
    assert sorted(r["metadata"]["stripe_session_id"] for r in platform.topups()) == sorted(sessions)
    assert_invariants(setup.settings)


def _unchanged(setup: StripeSetup, platform: Platform) -> None:
    assert platform.balance() == 0
    assert platform.topups() == []
    assert count(setup.settings, wallet_transactions, wallet_transactions.c.platform_id == platform.id) == 0


def test_a_bad_stale_or_missing_signature_or_a_malformed_body_is_400_and_changes_nothing(setup: StripeSetup) -> None:
    platform = setup.platform()
    session_id = setup.paid_session(platform)
    completed = setup.fake.completed_event(session_id)
    payload, good = signed(completed, setup.webhook_secret)
    url = setup.gateway.url + WEBHOOK
    tampered = payload.replace(b'"amount_total":2000', b'"amount_total":9999')
    assert tampered != payload
    attempts = {
        "another secret": setup.deliver(completed, secret="whsec_" + "A" * 32),
        "stale (301 s)": setup.deliver(completed, at=int(time.time()) - 301),
        "tampered body": httpx.post(url, content=tampered, headers=good),
        "no header": httpx.post(url, content=payload, headers={"Content-Type": "application/json"}),
        "garbled header": httpx.post(
            url, content=payload, headers={"Stripe-Signature": "t=abc,v1", "Content-Type": "application/json"}
        ),
        "v0 scheme only": httpx.post(
            url,
            content=payload,
            headers={
                "Stripe-Signature": signature(payload, setup.webhook_secret).replace("v1=", "v0="),
                "Content-Type": "application/json",
            },
        ),
        "not JSON, signed": setup.deliver(b"{not json"),
        "a JSON list, signed": setup.deliver(b"[1, 2]"),
        "not UTF-8, signed": setup.deliver(b'{"object": "event", "x": "\xff"}'),
    }
    for name, response in attempts.items():
        assert response.status_code == 400, (name, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and error["param"] == "Stripe-Signature", name
        assert setup.webhook_secret not in response.text and setup.fake.secret_key not in response.text
    assert "300 s" in attempts["stale (301 s)"].json()["error"]["message"]
    _unchanged(setup, platform)
    # the genuine delivery still works afterwards: the refused ones claimed nothing
    assert setup.deliver(completed).status_code == 200
    assert platform.balance() == Decimal("20")


def test_events_that_credit_nothing_are_acknowledged_and_ignored(setup: StripeSetup) -> None:
    platform = setup.platform()
    session_id = setup.paid_session(platform)
    ignored = [
        setup.fake.completed_event(session_id, payment_status="unpaid"),
        setup.fake.completed_event(session_id, currency="eur"),
        setup.fake.completed_event(session_id, metadata={}),
        setup.fake.completed_event(session_id, amount_total=None),
        setup.fake.completed_event(session_id, metadata={"platform_id": "3f1e2a9c-7b4d-4c1e-9a2b-5d6e7f8a9b0c"}),
        event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent", "amount": 2000}),
        event("checkout.session.expired", setup.fake.sessions[session_id]),
        {"id": "evt_1", "object": "event", "type": "checkout.session.completed", "data": []},
    ]
    for body in ignored:
        answered = setup.deliver(body)
        assert answered.status_code == 200, answered.text
        assert answered.json() == {"received": True}
    _unchanged(setup, platform)
    # a session ignored while unpaid (or sent with an unknown platform) is credited when it completes paid
    assert setup.deliver(setup.fake.completed_event(session_id)).status_code == 200
    assert platform.balance() == Decimal("20")


def test_a_deleted_platform_is_never_credited(setup: StripeSetup) -> None:
    platform = setup.platform()
    session_id = setup.paid_session(platform)
    assert platform.client.delete(f"/v1/platforms/{platform.id}").status_code == 204
    assert setup.deliver(setup.fake.completed_event(session_id)).status_code == 200
    assert count(setup.settings, wallet_transactions, wallet_transactions.c.platform_id == platform.id) == 0
    assert count(setup.settings, card_payments, card_payments.c.session_id == session_id) == 0


def test_the_operator_top_up_emits_wallet_topped_up_too(setup: StripeSetup) -> None:
    platform = setup.platform()
    receiver = WebhookReceiver().start()
    try:
        endpoint_id = _subscribe(platform, receiver)
        topped = setup.admin.post(f"/v1/admin/platforms/{platform.id}/wallet/topup", json={"amount_usd": "3.5"})
        assert topped.status_code == 200, topped.text
        txn = topped.json()["transaction"]
        deliveries = _deliveries(platform, endpoint_id)
        assert [d["event_id"] for d in deliveries] == [f"{txn['id']}:wallet.topped_up"]
        data = receiver.wait_for(lambda r: len(r) >= 1, timeout=15)[0].json()["data"]
        assert Decimal(str(data["amount_usd"])) == Decimal("3.5") and data["transaction_id"] == txn["id"]
    finally:
        receiver.stop()


def test_no_secret_reaches_a_log_line(setup: StripeSetup, caplog: pytest.LogCaptureFixture) -> None:
    platform = setup.platform()
    with caplog.at_level(logging.DEBUG):
        session_id = setup.paid_session(platform)
        assert setup.deliver(setup.fake.completed_event(session_id)).status_code == 200
        assert setup.deliver(setup.fake.completed_event(session_id)).status_code == 200
        assert setup.deliver(setup.fake.completed_event(session_id), secret="whsec_" + "B" * 32).status_code == 400
        setup.fake.refuse_with = 503
        try:
            assert platform.checkout(amount_usd="20", **RETURN).status_code == 502
        finally:
            setup.fake.refuse_with = None
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert "stripe session already credited" in logged  # the lines were captured
    assert setup.fake.secret_key not in logged and setup.webhook_secret not in logged


@pytest.mark.postgres
def test_the_same_event_sent_to_two_processes_credits_once(tmp_path: Path, postgres_server: PostgresServer) -> None:
    """Two ``tollway serve`` processes on one PostgreSQL database (and Redis, which scale-out needs): each event is
    sent to both at once, twice over; every session is credited exactly once. The processes log at ``info``, and
    their log lines pass the suite's canary check (no Stripe secret) when they stop."""
    redis = start_redis_or_skip()
    secret_key, webhook_secret = stripe_secrets()
    fake = FakeStripe(secret_key).start()
    base = stripe_settings(
        tmp_path,
        postgres_server.new_database(),
        fake,
        webhook_secret,
        redis_url=redis.url,
        expected_instances=2,
        log_level="info",
    )
    processes: list[GatewayProcess] = []
    clients: list[httpx.Client] = []
    try:
        for _ in range(2):
            processes.append(GatewayProcess(base.model_copy(update={"port": free_port()})))
        first, second = processes
        admin = httpx.Client(base_url=first.url, headers={"Authorization": f"Bearer {base.admin_key}"}, timeout=30)
        clients.append(admin)
        platform = new_platform(admin, second.url)  # checkouts through the second, webhooks to both
        clients.append(platform.client)
        sessions = []
        for _ in range(4):
            created = platform.checkout(amount_usd="7.25", **RETURN)
            assert created.status_code == 201, created.text
            sessions.append(created.json()["session_id"])
        for session_id in sessions:
            payload, headers = signed(fake.completed_event(session_id), webhook_secret)
            assert _concurrently([first.url, second.url, first.url, second.url], payload, headers) == [200] * 4
        assert platform.balance() == Decimal("29.00")
        rows = platform.topups()
        assert sorted(r["metadata"]["stripe_session_id"] for r in rows) == sorted(sessions)
        assert all(Decimal(str(r["amount_usd"])) == Decimal("7.25") for r in rows)
        assert count(base, card_payments) == 4
        assert_invariants(base)
    finally:
        for client in clients:
            client.close()
        for process in processes:
            process.stop()
        fake.stop()
        redis.stop()


# -- without Stripe settings ------------------------------------------------------------------------------------


def test_without_stripe_settings_both_routes_are_404(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'off.db'}", stripe_secret_key="sk_test_only_one")
    assert not settings.stripe_enabled
    with (
        running_gateway(settings) as gateway,
        httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {settings.admin_key}"}) as admin,
    ):
        platform = new_platform(admin, gateway.url)
        off = platform.checkout(amount_usd="20", **RETURN)
        assert off.status_code == 404
        assert off.json()["error"]["code"] == "not_found"
        assert "TOLLWAY_STRIPE_SECRET_KEY" in off.json()["error"]["message"]
        payload, headers = signed(event("checkout.session.completed", {"id": "cs_1"}), "whsec_" + "C" * 32)
        hook = httpx.post(gateway.url + WEBHOOK, content=payload, headers=headers)
        assert hook.status_code == 404 and hook.json()["error"]["code"] == "not_found"
        # the platform key is still checked first: another platform's id stays a plain 404
        assert (
            platform.client.post("/v1/platforms/00000000-0000-4000-8000-000000000000/wallet/checkout").status_code
            == 404
        )
        platform.client.close()
