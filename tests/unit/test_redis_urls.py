"""TOLLWAY_REDIS_URL: the forms the rate limiter's Redis connection takes, and clear refusals for the rest."""

from __future__ import annotations

import ssl

import pytest

from tollway.settings import SettingsError, load_settings, redis_endpoint


def test_plain_url_with_login_and_db() -> None:
    endpoint = redis_endpoint("redis://ops:s3cret@redis.internal:6380/4", connect_timeout_s=1.5)
    assert (endpoint.host, endpoint.port, endpoint.db, endpoint.path) == ("redis.internal", 6380, 4, None)
    assert (endpoint.username, endpoint.password, endpoint.tls, endpoint.connect_timeout_s) == (
        "ops",
        "s3cret",
        None,
        1.5,
    )
    assert "s3cret" not in repr(endpoint)


def test_defaults() -> None:
    endpoint = redis_endpoint("redis://localhost")
    assert (endpoint.host, endpoint.port, endpoint.db, endpoint.username, endpoint.password) == (
        "localhost",
        6379,
        0,
        None,
        None,
    )


def test_unix_socket_with_db() -> None:
    endpoint = redis_endpoint("unix:///run/redis/redis.sock?db=2")
    assert (endpoint.path, endpoint.db, endpoint.tls) == ("/run/redis/redis.sock", 2, None)


def test_tls_verifies_by_default_and_can_be_told_not_to() -> None:
    verified = redis_endpoint("rediss://cache.example.com:6390")
    assert verified.tls is not None
    assert verified.tls.verify_mode == ssl.CERT_REQUIRED and verified.tls.check_hostname
    unverified = redis_endpoint("rediss://cache.example.com?ssl_cert_reqs=none")
    assert unverified.tls is not None
    assert unverified.tls.verify_mode == ssl.CERT_NONE and not unverified.tls.check_hostname


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://redis:6379", "must be redis://…, rediss://… or unix://…"),
        ("redis://:hunter2@redis:99999", "Port out of range"),
        ("redis://:hunter2@redis:6379?socket_timeout=3", "option 'socket_timeout' is not supported"),
        ("redis://redis?ssl_cert_reqs=none", "need a rediss:// URL"),
        ("rediss://redis?ssl_cert_reqs=sometimes", "ssl_cert_reqs must be none, optional or required"),
    ],
)
def test_bad_urls_are_refused_at_start_naming_the_setting(url: str, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(redis_url=url)
    assert str(refused.value).startswith("TOLLWAY_REDIS_URL: ")
    assert message in str(refused.value)
    assert "hunter2" not in str(refused.value)
