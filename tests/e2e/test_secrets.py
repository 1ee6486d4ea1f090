"""Secrets never leak (SPEC §15) on the error paths most likely to echo them: a provider that answers 401 with our
provider key in its error body, and failed authentication. Checked in the response, the captured logs and
``/metrics``; the JSON log formatter's scrubber and request fields are checked directly."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.support.seed import FAKE_PROVIDER_KEY, Tenant, create_model, create_provider, create_tenant
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.observability.context import RequestContext, bind_principal, bind_request, unbind_request
from tollway.observability.logs import REDACTED, JsonFormatter, Scrubber


@pytest.fixture(scope="module")
def tenant(admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread) -> Iterator[Tenant]:
    provider = create_provider(admin, fake_upstream.base_url)
    create_model(admin, provider["id"], "refused", "fake/error?status=401")
    tenant = create_tenant(admin, gateway.url, provider["id"], provider["slug"])
    yield tenant
    tenant.client.close()


def test_provider_key_echoed_by_upstream_is_scrubbed(
    gateway: GatewayServer, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = tenant.client.post(
        "/v1/chat/completions", json={"model": "refused", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert "HTTP 401" in error["message"]
    assert FAKE_PROVIDER_KEY not in response.text and "sk-fakeprovider" not in response.text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP 401" in logged  # the failure was logged ...
    assert FAKE_PROVIDER_KEY not in logged and "sk-fakeprovider" not in logged  # ... without the key
    metrics = httpx.get(gateway.url + "/metrics").text
    assert "sk-" not in metrics and tenant.platform_id not in metrics


def test_failed_authentication_never_echoes_the_key(gateway: GatewayServer, tenant: Tenant) -> None:
    wrong = tenant.platform_key[:-4] + "AAAA"
    for header in (f"Bearer {wrong}", wrong, f"Bearer {gateway.settings.admin_key}x"):
        response = httpx.post(
            gateway.url + "/v1/chat/completions", headers={"Authorization": header}, json={"model": "refused"}
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert wrong[:12] not in response.text and "sk-admin_" not in response.text


def test_json_log_lines_carry_request_fields_and_no_secrets() -> None:
    admin = "sk-admin_" + "q" * 40
    secret = "0123456789abcdef" * 4
    formatter = JsonFormatter(Scrubber([admin, secret]))
    context = RequestContext("req_" + "a" * 32)
    token = bind_request(context)
    try:
        bind_principal("platform-1", "end-user-1")
        try:
            raise ValueError(f"boom with {admin}")
        except ValueError as exc:
            record = logging.LogRecord(
                "tollway.test", logging.ERROR, __file__, 1, "key %s secret %s header %s google %s hook %s", None, None
            )
            record.args = (admin, secret, "Bearer abc.DEF-123456", "AIza" + "x" * 30, "whsec_" + "y" * 20)
            record.exc_info = (ValueError, exc, exc.__traceback__)
            line = formatter.format(record)
    finally:
        unbind_request(token)
    entry = orjson.loads(line)
    assert "\n" not in line
    assert entry["level"] == "error" and entry["logger"] == "tollway.test" and entry["ts"].endswith("Z")
    assert entry["request_id"] == "req_" + "a" * 32
    assert (entry["platform_id"], entry["end_user_id"]) == ("platform-1", "end-user-1")
    assert entry["message"] == f"key {REDACTED} secret {REDACTED} header {REDACTED} google {REDACTED} hook {REDACTED}"
    assert "ValueError: boom with " + REDACTED in entry["exception"]
    for value in (admin, secret, "abc.DEF-123456", "AIza", "whsec_"):
        assert value not in line
    outside = orjson.loads(formatter.format(logging.LogRecord("x", logging.INFO, __file__, 1, "plain", None, None)))
    assert "request_id" not in outside and outside["message"] == "plain"
