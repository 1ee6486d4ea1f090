"""Webhook rules that need no server (SPEC §11.2, §11.3, §11.4, §11.5): the address classifier, URL form rules,
Standard Webhooks signatures (checked with the reference ``standardwebhooks`` package), the retry schedule."""

from __future__ import annotations

import base64
import ipaddress
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tollway.domain.addresses import UnsafeUrl, check_url, is_public, parse_address
from tollway.domain.webhooks import (
    DEFAULT_EVENTS,
    envelope,
    new_secret,
    new_webhook_id,
    next_attempt_delay,
    signature_header,
    wallet_data,
)
from tollway.workers.webhooks import excerpt_of

REFUSED = [
    "127.0.0.1", "127.255.255.254", "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "100.64.0.1", "100.127.255.254", "169.254.169.254", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250",
    "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "fe80::1%eth0", "ff02::1", "fec0::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:100.64.0.1", "::ffff:0.0.0.0",
    "::127.0.0.1", "64:ff9b::10.0.0.1", "2002:0a00:0001::1", "2002:7f00:0001::1",
]  # fmt: skip
PUBLIC = [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.1", "172.15.255.255", "172.32.0.1",
    "192.169.0.1", "169.253.0.1", "223.255.255.255", "2606:4700:4700::1111", "2001:4860:4860::8888",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:0808:0808::1",
]  # fmt: skip


@pytest.mark.parametrize("text", REFUSED)
def test_non_public_addresses_are_refused(text: str) -> None:
    address = parse_address(text)
    assert address is not None
    assert not is_public(address)


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_pass(text: str) -> None:
    address = parse_address(text)
    assert address is not None
    assert is_public(address)


def test_every_special_ipv4_range_edge_is_classified() -> None:
    for net, public in (("10.0.0.0/8", False), ("172.16.0.0/12", False), ("192.168.0.0/16", False),
                        ("100.64.0.0/10", False), ("127.0.0.0/8", False), ("169.254.0.0/16", False)):  # fmt: skip
        network = ipaddress.IPv4Network(net)
        assert is_public(network.network_address) is public
        assert is_public(network.broadcast_address) is public
        assert is_public(network.network_address - 1) is True or str(network.network_address - 1).startswith("0.")
        assert is_public(network.broadcast_address + 1) is True


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/hook", "https"),
        ("ftp://example.com/hook", "https"),
        ("https://user:pass@example.com/hook", "credentials"),
        ("https://user@example.com/hook", "credentials"),
        ("https:///hook", "host"),
        ("https://127.0.0.1/hook", "public"),
        ("https://[::1]/hook", "public"),
        ("https://[::ffff:10.0.0.1]/hook", "public"),
        ("https://169.254.169.254/latest/meta-data", "public"),
        ("https://localhost/hook", "public"),
        ("https://example.com:99999/hook", "port"),
        ("not a url", "https"),
    ],
)
def test_url_form_rules(url: str, message: str) -> None:
    with pytest.raises(UnsafeUrl, match=message):
        check_url(url, allow_private=False)


def test_url_rules_accept_public_https_and_private_only_when_allowed() -> None:
    assert check_url("https://hooks.example.com/tollway?x=1", allow_private=False) == "hooks.example.com"
    assert check_url("https://8.8.8.8/hook", allow_private=False) == "8.8.8.8"
    assert check_url("http://127.0.0.1:9000/hook", allow_private=True) == "127.0.0.1"
    with pytest.raises(UnsafeUrl, match="credentials"):
        check_url("http://a:b@127.0.0.1/hook", allow_private=True)


def test_secret_and_webhook_id_formats() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    webhook_id = new_webhook_id()
    assert webhook_id.startswith("msg_") and len(webhook_id) == 36
    int(webhook_id[4:], 16)
    assert "budget.debited" not in DEFAULT_EVENTS and len(DEFAULT_EVENTS) == 6


def test_signatures_verify_with_the_reference_package_including_rotation() -> None:
    old, new = new_secret(), new_secret()
    body = envelope("budget.topped_up", "txn-1", datetime(2026, 5, 20, 17, 31, 2, tzinfo=UTC), {"a": 1})
    webhook_id, ts = new_webhook_id(), int(time.time())
    headers = {"webhook-id": webhook_id, "webhook-timestamp": str(ts)}
    single = signature_header([new], webhook_id, ts, body)
    assert single.startswith("v1,") and " " not in single
    assert Webhook(new).verify(body, {**headers, "webhook-signature": single})["event_id"] == "txn-1:budget.topped_up"
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, {**headers, "webhook-signature": single})
    both = signature_header([new, old], webhook_id, ts, body)
    assert len(both.split(" ")) == 2
    for secret in (new, old):
        Webhook(secret).verify(body, {**headers, "webhook-signature": both})
    with pytest.raises(WebhookVerificationError):  # another body does not verify
        Webhook(new).verify(body + b" ", {**headers, "webhook-signature": both})


def test_envelope_is_exact() -> None:
    data = wallet_data(
        platform_id="p", wallet_id="w", transaction_id="t", txn_type="usage", amount_nanos=-250_000_000,
        balance_after_nanos=900_000_000, threshold_nanos=1_000_000_000, request_id="req_1",
    )  # fmt: skip
    body = envelope("wallet.low_balance", "t", datetime(2026, 5, 20, 17, 31, 2, 5000, tzinfo=UTC), data)
    assert body == (
        b'{"event_type":"wallet.low_balance","event_id":"t:wallet.low_balance","api_version":"2026-05-01",'
        b'"created_at":"2026-05-20T17:31:02.005000Z","data":{"platform_id":"p","wallet_id":"w","transaction_id":"t",'
        b'"type":"usage","amount_usd":-0.25,"balance_usd_after":0.9,"threshold_usd":1,"request_id":"req_1"}}'
    )
    assert orjson.loads(body)["data"]["amount_usd"] == -0.25


def test_retry_schedule_and_jitter_bounds() -> None:
    delays = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    assert [next_attempt_delay(delays, n, 0.0) for n in range(1, 8)] == [timedelta(seconds=d) for d in delays]
    assert next_attempt_delay(delays, 8, 0.0) is None  # the 8th attempt was the last
    assert next_attempt_delay(delays, 1, 0.999) == timedelta(seconds=5 * 1.0999)
    assert next_attempt_delay(delays, 2, 5.0) == timedelta(seconds=330)  # capped at +10 %


def test_excerpt_is_at_most_one_kib_and_scrubbed() -> None:
    raw = ("Bearer abcdefghijkl sk-proj-abcdefghijkl whsec_QUJDREVGR0g= é" * 100).encode()
    text = excerpt_of(raw)
    assert len(text.encode()) <= 1024
    assert "sk-proj" not in text and "whsec_" not in text and "abcdefghijkl" not in text
    assert "[redacted]" in text
