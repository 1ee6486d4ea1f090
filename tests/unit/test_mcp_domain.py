"""The pure rules of MCP apps and connections (SPEC §16.1, §16.2): origins, refresh timing, token lifetimes, scopes,
state digests and what sealed secrets are bound to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tollway.domain.mcp import (
    REFRESH_SKEW,
    BadOrigin,
    app_secret_context,
    connection_context,
    granted_scopes,
    new_code_verifier,
    new_state,
    normalise_origin,
    origin_of,
    refresh_due,
    state_digest,
    token_expiry,
)
from tollway.domain.sealing import Sealer, SealError

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com/", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
        ("https://[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_origins_are_normalised(given: str, origin: str) -> None:
    assert normalise_origin(given) == origin


@pytest.mark.parametrize(
    "given",
    ["app.example.com", "ftp://a.example", "https://", "https://u:p@a.example", "https://a.example/x",
     "https://a.example?q", "https://a.example#f", "https://a.example:0x1", "https://a.example:70000"],
)  # fmt: skip
def test_non_origins_are_refused(given: str) -> None:
    with pytest.raises(BadOrigin):
        normalise_origin(given)


def test_origin_of_a_url() -> None:
    assert origin_of("https://App.example.com:443/settings?tab=1") == "https://app.example.com"
    assert origin_of("http://127.0.0.1:3000/cb") == "http://127.0.0.1:3000"
    for url in ("/relative", "javascript:alert(1)", "https://user@a.example/", "mailto:a@b.c", "https://a.example:x/"):
        assert origin_of(url) is None


def test_refresh_is_due_within_the_skew() -> None:
    assert not refresh_due(None, NOW)  # no lifetime given: used until refused
    assert not refresh_due(NOW + REFRESH_SKEW + timedelta(seconds=1), NOW)
    assert refresh_due(NOW + REFRESH_SKEW, NOW)
    assert refresh_due(NOW - timedelta(hours=1), NOW)


def test_token_expiry_reads_expires_in() -> None:
    assert token_expiry(3600, NOW) == NOW + timedelta(hours=1)
    assert token_expiry("60", NOW) == NOW + timedelta(minutes=1)
    assert token_expiry(0, NOW) == NOW
    for bad in (None, True, -1, "soon", 10**12, [5]):
        assert token_expiry(bad, NOW) is None


def test_granted_scopes() -> None:
    assert granted_scopes("a b  c", ("x",)) == ("a", "b", "c")
    assert granted_scopes(None, ("x", "y")) == ("x", "y")
    assert granted_scopes("  ", ("x",)) == ("x",)


def test_states_and_verifiers_are_unguessable_and_only_digests_are_kept() -> None:
    states = {new_state() for _ in range(100)}
    assert len(states) == 100 and all(len(s) >= 43 for s in states)
    verifier = new_code_verifier()
    assert 43 <= len(verifier) <= 128 and verifier.replace("-", "").replace("_", "").isalnum()
    state = new_state()
    assert state_digest(state) == state_digest(state) and state not in state_digest(state)
    assert len(state_digest(state)) == 64


def test_sealed_secrets_are_bound_to_their_app_and_connection() -> None:
    sealer = Sealer(b"k" * 32)
    secret = sealer.seal("client-secret", app_secret_context("p1", "a1"))
    assert sealer.open(secret, app_secret_context("p1", "a1")) == "client-secret"
    for other in (app_secret_context("p2", "a1"), app_secret_context("p1", "a2"), connection_context("p1", "a1", "u")):
        with pytest.raises(SealError):
            sealer.open(secret, other)
    token = sealer.seal("access", connection_context("p1", "a1", "u1"))
    with pytest.raises(SealError):
        sealer.open(token, connection_context("p1", "a1", "u2"))
