"""CORS (SPEC §13.1): with ``TOLLWAY_CORS_ORIGINS`` set, inference routes and ``/v1/me/*`` answer browsers from the
listed origins; management and operator routes never carry CORS headers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.servers import GatewayServer, running_gateway

ALLOWED = "https://app.example.com"


@pytest.fixture(scope="module")
def cors_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp: Path = tmp_path_factory.mktemp("cors")
    settings = make_settings(tmp, f"sqlite:///{tmp / 'tollway.db'}", cors_origins=f"{ALLOWED}, https://b.example")
    with running_gateway(settings) as gateway:
        yield gateway


def _preflight(gateway: GatewayServer, path: str, origin: str = ALLOWED) -> httpx.Response:
    return httpx.options(
        gateway.url + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/responses", "/v1/images/generations", "/v1/threads/t1/items"]
)
def test_inference_preflight_is_allowed_for_listed_origins(cors_gateway: GatewayServer, path: str) -> None:
    answer = _preflight(cors_gateway, path)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()


def test_unlisted_origins_get_no_allow_origin(cors_gateway: GatewayServer) -> None:
    answer = _preflight(cors_gateway, "/v1/chat/completions", origin="https://evil.example")
    assert "access-control-allow-origin" not in answer.headers


def test_simple_requests_on_inference_and_me_carry_the_header(cors_gateway: GatewayServer) -> None:
    for path in ("/v1/models", "/v1/me/budget"):
        answer = httpx.get(cors_gateway.url + path, headers={"Origin": ALLOWED, "Authorization": "Bearer sk-eu_nope"})
        assert answer.status_code == 401  # errors too, so that the browser can read them
        assert answer.headers["access-control-allow-origin"] == ALLOWED
        assert "x-request-id" in answer.headers["access-control-expose-headers"]


@pytest.mark.parametrize("path", ["/v1/admin/platforms", "/v1/platforms/abc/end-users", "/v1/platforms/abc/threads"])
def test_management_routes_never_carry_cors_headers(cors_gateway: GatewayServer, path: str) -> None:
    assert not any(h.startswith("access-control-") for h in _preflight(cors_gateway, path).headers)
    answer = httpx.get(cors_gateway.url + path, headers={"Origin": ALLOWED, "Authorization": "Bearer sk-admin_x"})
    assert answer.status_code == 401
    assert not any(h.startswith("access-control-") for h in answer.headers)
