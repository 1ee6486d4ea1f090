"""SPEC §15 against ``tollway serve``: the failed-login throttle counts the direct peer unless it is a trusted
proxy (X-Forwarded-For from 127.0.0.1 no longer buys a fresh allowance per request), and a trailing slash is an
unknown path (404 envelope), never a redirect built from ``Host``. The tests' in-process ``GatewayServer`` serves
the app the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.processes import GatewayProcess, StderrLines
from tests.support.servers import running_gateway

LIMIT = 3
BAD_KEY = {"Authorization": "Bearer sk-plat_" + "x" * 43}


def _serve(tmp: Path, **overrides: object) -> GatewayProcess:
    settings = make_settings(tmp, f"sqlite:///{tmp / 'tollway.db'}", auth_failure_limit=LIMIT, **overrides)
    return GatewayProcess(settings)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    process = _serve(tmp_path)
    lines = StderrLines(process)
    try:
        yield process
    finally:
        process.stop()
        lines.finish()


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[GatewayProcess]:
    process = _serve(tmp_path, trusted_proxies="127.0.0.1/32")
    lines = StderrLines(process)
    try:
        yield process
    finally:
        process.stop()
        lines.finish()


def _statuses(url: str, forwarded_for: list[str]) -> list[int]:
    with httpx.Client(base_url=url, timeout=30) as client:
        return [
            client.get("/v1/models", headers={**BAD_KEY, "X-Forwarded-For": ip, "Forwarded": f"for={ip}"}).status_code
            for ip in forwarded_for
        ]


def test_proxy_headers_from_an_untrusted_peer_do_not_evade_the_throttle(gateway: GatewayProcess) -> None:
    statuses = _statuses(gateway.url, [f"203.0.113.{i}" for i in range(LIMIT + 3)])
    assert statuses[:LIMIT] == [401] * LIMIT
    assert statuses[-1] == 429  # every request counted against 127.0.0.1, whatever the headers claimed


def test_the_tests_gateway_server_trusts_no_proxy_either(tmp_path: Path) -> None:
    # GatewayServer (the app the e2e tests drive) starts uvicorn with ``tollway serve``'s options: uvicorn's own
    # default would rewrite the client from X-Forwarded-For sent by 127.0.0.1, giving each forged address its own
    # allowance.
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'tollway.db'}", auth_failure_limit=LIMIT)
    with running_gateway(settings) as server:
        statuses = _statuses(server.url, [f"203.0.113.{i}" for i in range(LIMIT + 3)])
    assert statuses[:LIMIT] == [401] * LIMIT
    assert statuses[-1] == 429


def test_a_trusted_proxy_names_the_client(behind_proxy: GatewayProcess) -> None:
    # Each client gets its own allowance...
    assert _statuses(behind_proxy.url, [f"203.0.113.{i}" for i in range(LIMIT + 3)]) == [401] * (LIMIT + 3)
    # ... and one client past it is throttled, while another is not.
    assert _statuses(behind_proxy.url, ["198.51.100.1"] * (LIMIT + 2))[-1] == 429
    assert _statuses(behind_proxy.url, ["198.51.100.2"]) == [401]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/embeddings/"),
        ("POST", "/v1/chat/completions/"),
        ("GET", "/healthz/"),
        ("GET", "/v1/admin/platforms/"),
        ("GET", "/v1/models/"),  # an empty slug, not a model lookup behind authentication
    ],
)
def test_a_trailing_slash_is_an_unknown_route(gateway: GatewayProcess, method: str, path: str) -> None:
    response = httpx.request(
        method, gateway.url + path, headers={"Host": "evil.example", **BAD_KEY}, json={}, timeout=30
    )
    assert response.status_code == 404, response.text
    assert "location" not in response.headers
    assert response.json()["error"]["code"] == "not_found"
