"""SPEC §15: proxy headers are believed only from ``TOLLWAY_TRUSTED_PROXIES``."""

from __future__ import annotations

import pytest

from tollway.http.client_address import client_host
from tollway.settings import SettingsError, load_settings, parse_networks

LOOPBACK = parse_networks("127.0.0.1")
PROXIES = parse_networks("10.0.0.0/8, 2001:db8::1")


def h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_host("127.0.0.1", h(("x-forwarded-for", "203.0.113.9")), ()) == "127.0.0.1"


def test_an_untrusted_peer_cannot_name_another_client() -> None:
    assert client_host("198.51.100.7", h(("x-forwarded-for", "203.0.113.9")), PROXIES) == "198.51.100.7"
    assert client_host("198.51.100.7", h(("forwarded", "for=203.0.113.9")), PROXIES) == "198.51.100.7"


def test_a_trusted_peer_names_the_client() -> None:
    assert client_host("127.0.0.1", h(("x-forwarded-for", "203.0.113.9")), LOOPBACK) == "203.0.113.9"
    assert client_host("10.1.2.3", h(("forwarded", 'for="[2001:db8::7]:4711";proto=https')), PROXIES) == "2001:db8::7"
    assert client_host("2001:db8::1", h(("forwarded", "for=192.0.2.60:80, for=10.0.0.2")), PROXIES) == "192.0.2.60"


def test_the_chain_is_walked_from_the_right_past_trusted_hops_only() -> None:
    # A client-supplied first entry is not believed: the hop the trusted proxy appended is.
    chain = h(("x-forwarded-for", "1.2.3.4, 203.0.113.9"), ("x-forwarded-for", "10.0.0.5"))
    assert client_host("10.0.0.1", chain, PROXIES) == "203.0.113.9"
    assert client_host("10.0.0.1", h(("x-forwarded-for", "10.0.0.9, 10.0.0.5")), PROXIES) == "10.0.0.9"
    assert client_host("10.0.0.1", h(("x-forwarded-for", "garbage, 10.0.0.5")), PROXIES) == "10.0.0.5"
    assert client_host("10.0.0.1", h(("x-forwarded-for", "unknown")), PROXIES) == "10.0.0.1"
    assert client_host("10.0.0.1", [], PROXIES) == "10.0.0.1"


def test_x_forwarded_for_wins_over_forwarded() -> None:
    headers = h(("forwarded", "for=192.0.2.1"), ("x-forwarded-for", "203.0.113.9"))
    assert client_host("10.0.0.1", headers, PROXIES) == "203.0.113.9"


def test_the_setting_is_checked() -> None:
    assert load_settings(trusted_proxies="10.0.0.0/8,::1").trusted_proxy_networks == parse_networks("10.0.0.0/8,::1")
    assert load_settings().trusted_proxy_networks == ()
    with pytest.raises(SettingsError, match="TOLLWAY_TRUSTED_PROXIES"):
        load_settings(trusted_proxies="10.0.0.0/8, proxy.internal")
