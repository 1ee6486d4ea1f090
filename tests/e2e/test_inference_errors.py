"""Every refusal the openai SDK can meet on inference: the envelope, the status class, the ``param`` path."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.support.seed import Tenant
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

USER = [{"role": "user", "content": "hi"}]

BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"messages": USER}, "model"),
    ({"model": "echo"}, "messages"),
    ({"model": "echo", "messages": []}, "messages"),
    ({"model": "echo", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"model": "echo", "messages": USER, "temperature": 3}, "temperature"),
    ({"model": "echo", "messages": USER, "temperature": True}, "temperature"),
    ({"model": "echo", "messages": USER, "top_p": 1.5}, "top_p"),
    ({"model": "echo", "messages": USER, "n": 9}, "n"),
    ({"model": "echo", "messages": USER, "max_tokens": 1.5}, "max_tokens"),
    ({"model": "echo", "messages": USER, "max_tokens": 10, "max_completion_tokens": 20}, "max_completion_tokens"),
    ({"model": "echo", "messages": USER, "stream_options": {"include_usage": True}}, "stream_options"),
    ({"model": "echo", "messages": USER, "bogus": 1}, "bogus"),
    ({"model": "echo", "messages": [{"role": "user", "content": "x", "extra": 1}]}, "messages[0].extra"),
    (
        {"model": "echo", "messages": [*USER, {"role": "tool", "tool_call_id": "nope", "content": "x"}]},
        "messages[1].tool_call_id",
    ),
    ({"model": "echo", "messages": USER, "tool_choice": "required"}, "tool_choice"),
    (
        {"model": "echo", "messages": USER, "tools": [{"type": "function", "function": {"name": "bad name"}}]},
        "tools[0].function.name",
    ),
    ({"model": "echo", "messages": USER, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": "echo", "messages": USER, "metadata": {"k": 1}}, "metadata.k"),
]


def _post(gateway: GatewayServer, key: str, body: Any, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=30, **kwargs)


@pytest.mark.parametrize(("body", "param"), BAD_BODIES, ids=[p for _, p in BAD_BODIES])
def test_validation_errors_name_the_field(
    gateway: GatewayServer, tenant: Tenant, fake_upstream: FakeUpstreamThread, body: dict[str, Any], param: str
) -> None:
    before = fake_upstream.request_count
    response = _post(gateway, tenant.platform_key, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["code"] == "invalid_request" and error["type"] == "invalid_request_error"
    assert error["message"]
    assert response.headers["x-request-id"].startswith("req_")
    assert fake_upstream.request_count == before


def test_sdk_raises_bad_request_with_param(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="echo", messages=USER, temperature=5)  # type: ignore[arg-type]
    assert err.value.param == "temperature"
    assert err.value.code == "invalid_request"


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"model": "echo", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "application/json"),
        (b'{"model": "echo", "model": "chat", "messages": []}', "application/json"),
        (b"{not json", "application/json"),
        (b"[]", "application/json"),
        (b'{"model": "echo"}', "text/plain"),
    ],
)
def test_malformed_bodies_are_400(gateway: GatewayServer, tenant: Tenant, raw: bytes, content_type: str) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {tenant.platform_key}", "Content-Type": content_type},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_body_over_limit_is_413(gateway: GatewayServer, tenant: Tenant) -> None:
    big = "x" * (gateway.settings.max_body_bytes + 10)
    response = _post(gateway, tenant.platform_key, {"model": "echo", "messages": [{"role": "user", "content": big}]})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_unknown_model_is_404_model_not_found(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        sdk.chat.completions.create(model="nope", messages=USER)  # type: ignore[arg-type]
    assert err.value.code == "model_not_found"


@pytest.mark.parametrize("key", ["Bearer", "sk-plat_unknown", "Basic abc", "sk-eu_" + "A" * 43])
def test_bad_keys_are_401(gateway: GatewayServer, key: str) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "echo", "messages": USER},
        headers={"Authorization": key if key in ("Bearer", "Basic abc") else f"Bearer {key}"},
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_sdk_authentication_error(gateway: GatewayServer) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-plat_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    client.close()


def test_operator_key_on_inference_is_wrong_key_type(gateway: GatewayServer) -> None:
    assert gateway.settings.admin_key is not None
    response = _post(gateway, gateway.settings.admin_key, {"model": "echo", "messages": USER})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "wrong_key_type"


def test_revoked_key_stops_working(gateway: GatewayServer, tenant: Tenant) -> None:
    created = tenant.client.post(f"/v1/platforms/{tenant.platform_id}/api-keys", json={"name": "temp"}).json()
    key = created["raw_key"]
    assert _post(gateway, key, {"model": "echo", "messages": USER}).status_code == 200
    assert tenant.client.delete(f"/v1/platforms/{tenant.platform_id}/api-keys/{created['id']}").status_code == 204
    assert _post(gateway, key, {"model": "echo", "messages": USER}).status_code == 401


def test_inference_only_key_cannot_manage(gateway: GatewayServer, tenant: Tenant) -> None:
    created = tenant.client.post(f"/v1/platforms/{tenant.platform_id}/api-keys", json={"scopes": ["inference"]}).json()
    response = httpx.get(
        f"{gateway.url}/v1/platforms/{tenant.platform_id}", headers={"Authorization": f"Bearer {created['raw_key']}"}
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def test_unknown_route_and_method_are_404_envelopes(gateway: GatewayServer) -> None:
    for method, path in (("GET", "/v1/nope"), ("DELETE", "/v1/chat/completions"), ("GET", "/")):
        response = httpx.request(method, gateway.url + path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert response.headers["x-request-id"].startswith("req_")


def test_empty_wallet_is_402_without_upstream_call(
    admin: httpx.Client, gateway: GatewayServer, tenant: Tenant, fake_upstream: FakeUpstreamThread
) -> None:
    from tests.support.seed import create_tenant

    poor = create_tenant(admin, gateway.url, tenant.provider_id, tenant.provider_slug, topup="0")
    before = fake_upstream.request_count
    response = _post(gateway, poor.platform_key, {"model": "echo", "messages": USER})
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "wallet_insufficient"
    assert fake_upstream.request_count == before
    poor.client.close()
