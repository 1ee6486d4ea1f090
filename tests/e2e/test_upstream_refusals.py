"""What the client sees when the provider refuses, rate-limits or is paused (SPEC §3, §14.2), for every provider
kind, with the official openai SDK as the client: a context-length refusal is 400 ``context_length_exceeded`` that
the SDK does not retry; another refusal keeps the provider's status and param under ``upstream_invalid_request``; a
persisting 429 is 429 ``upstream_rate_limited`` with Retry-After; every breaker open is 503 ``provider_unavailable``.
Streaming requests get the same before the first byte; every failed attempt is logged at zero cost, nothing is
charged. Each row gets its own providers so that retry budgets and breakers are this module's alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.providers_conftest import ROWS
from tests.support.seed import FAKE_PROVIDER_KEY, Tenant, create_model, create_provider, create_tenant, logs_for
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

USER: Any = [{"role": "user", "content": "Hello, Tollway!"}]
RATE_LIMITED = "fake/error?status=429&retry_after=0"
# slug -> upstream model, on the row's main provider.
MODELS = {
    "too-long": "fake/error?status=400&type=context_length_exceeded",
    "bad-param": "fake/error?status=422&param=temperature",
    "bad-request": "fake/error?status=400",
    "limited-long": "fake/error?status=429&retry_after=3600",  # the wait would end after the deadline: no retry
    "quota": "fake/error?status=429&type=insufficient_quota",
    "circuit": "fake/error?status=500",
}


@dataclass(frozen=True)
class Refusals:
    kind: str
    tenant: Tenant
    balance_usd: float


def _provider(admin: httpx.Client, tenant: Tenant | None, base_url: str, kind: str) -> dict[str, Any]:
    provider = create_provider(admin, base_url, kind=kind)
    if tenant is not None:
        body = {"provider_id": provider["id"], "api_key": FAKE_PROVIDER_KEY}
        response = tenant.client.post(f"/v1/platforms/{tenant.platform_id}/llm-configs", json=body)
        assert response.status_code == 201, response.text
    return provider


@pytest.fixture(scope="module", params=ROWS, ids=[row.id for row in ROWS])
def refusals(
    request: pytest.FixtureRequest, admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> Iterator[Refusals]:
    row = request.param
    base_url = fake_upstream.dialect_base_url(row.dialect)
    main = _provider(admin, None, base_url, row.kind)
    for slug, upstream in MODELS.items():
        create_model(admin, main["id"], slug, upstream)
    tenant = create_tenant(admin, gateway.url, main["id"], main["slug"])
    # A persisting 429: alone on its provider (3 attempts), and over a fallback to another provider (3 + 3). One row
    # per mode: five 429s in a row would open a row's circuit.
    alone, first, second = (_provider(admin, tenant, base_url, row.kind)["id"] for _ in range(3))
    for suffix in ("", "-stream"):
        create_model(admin, alone, f"limited{suffix}", RATE_LIMITED)
        create_model(admin, first, f"limited-fallback{suffix}", RATE_LIMITED, priority=0)
        create_model(admin, second, f"limited-fallback{suffix}", RATE_LIMITED, priority=1)
    yield Refusals(row.kind, tenant, _balance(tenant))
    tenant.client.close()


def _balance(tenant: Tenant) -> float:
    balance: float = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()["balance_usd"]
    return balance


@pytest.fixture
def sdk(gateway: GatewayServer, refusals: Refusals) -> Iterator[openai.OpenAI]:
    key = refusals.tenant.platform_key
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30) as client:
        yield client


def create(sdk: openai.OpenAI, model: str, stream: bool) -> None:
    """A chat completion, drained when streamed: the error must come before the first byte either way."""
    if stream:
        list(sdk.chat.completions.create(model=model, messages=USER, stream=True))
    else:
        sdk.chat.completions.create(model=model, messages=USER)


def envelope(error: openai.APIStatusError) -> dict[str, Any]:
    """The error object the gateway sent (the SDK's ``message`` adds an "Error code: N - " prefix)."""
    body: dict[str, Any] = error.response.json()["error"]
    assert set(body) == {"message", "type", "code", "param"}
    return body


def assert_failed_attempts_free(refusals: Refusals, error: openai.APIStatusError, attempts: int, code: str) -> None:
    """One zero-cost ``error`` row per upstream attempt, and the wallet untouched (SPEC §9.4, §14.2)."""
    rows = logs_for(refusals.tenant, error.response.headers["x-request-id"], expected=attempts)
    assert len(rows) == attempts
    assert {(r["status"], r["cost_usd"], r["error_code"]) for r in rows} == {("error", 0, code)}
    assert _balance(refusals.tenant) == refusals.balance_usd


STREAM = pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])


@STREAM
def test_context_length_is_400_and_the_sdk_does_not_retry(
    gateway: GatewayServer, refusals: Refusals, fake_upstream: FakeUpstreamThread, stream: bool
) -> None:
    key = refusals.tenant.platform_key
    before = fake_upstream.request_count
    retrying = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=2, timeout=30)
    with retrying, pytest.raises(openai.BadRequestError) as err:
        create(retrying, "too-long", stream)
    assert fake_upstream.request_count - before == 1  # neither Tollway nor the SDK tried again
    error = err.value
    assert (error.status_code, error.code, error.type) == (400, "context_length_exceeded", "invalid_request_error")
    assert envelope(error)["message"].startswith(
        f"Upstream provider '{refusals.tenant.provider_slug}' rejected the request: "
    )
    assert error.param == ("messages" if refusals.kind in ("openai", "openai_compatible", "asi1") else None)
    assert "retry-after" not in error.response.headers
    assert_failed_attempts_free(refusals, error, 1, "context_length_exceeded")


@STREAM
def test_invalid_request_keeps_the_providers_status_and_param(
    sdk: openai.OpenAI, refusals: Refusals, fake_upstream: FakeUpstreamThread, stream: bool
) -> None:
    before = fake_upstream.request_count
    with pytest.raises(openai.UnprocessableEntityError) as err:
        create(sdk, "bad-param", stream)
    error = err.value
    assert (error.status_code, error.code, error.type) == (422, "upstream_invalid_request", "invalid_request_error")
    assert error.param == "temperature"  # as the provider named it, in each dialect's own way
    assert "rejected the request: " in error.message and "simulated HTTP 422" in error.message
    with pytest.raises(openai.BadRequestError) as bare:
        create(sdk, "bad-request", stream)
    assert (bare.value.code, bare.value.param) == ("upstream_invalid_request", None)
    assert fake_upstream.request_count - before == 2
    assert_failed_attempts_free(refusals, error, 1, "upstream_invalid_request")


@STREAM
@pytest.mark.parametrize(
    ("model", "attempts", "retry_after"),
    [("limited", 3, "1"), ("limited-fallback", 6, "1"), ("limited-long", 1, "3600")],
)
def test_a_persisting_429_is_upstream_rate_limited_with_retry_after(
    sdk: openai.OpenAI,
    refusals: Refusals,
    fake_upstream: FakeUpstreamThread,
    stream: bool,
    model: str,
    attempts: int,
    retry_after: str,
) -> None:
    before = fake_upstream.request_count
    with pytest.raises(openai.RateLimitError) as err:
        create(sdk, model + ("-stream" if stream and model != "limited-long" else ""), stream)
    assert fake_upstream.request_count - before == attempts  # each row: the first try and 2 retries (§14.2)
    error = err.value
    assert (error.status_code, error.code, error.type) == (429, "upstream_rate_limited", "rate_limit_error")
    assert error.response.headers["retry-after"] == retry_after  # the provider's Retry-After, 1 when it gave 0
    assert "returned HTTP 429" in error.message
    assert_failed_attempts_free(refusals, error, attempts, "upstream_error")


def test_a_quota_exhausted_429_is_not_retried_and_stays_502(
    sdk: openai.OpenAI, refusals: Refusals, fake_upstream: FakeUpstreamThread
) -> None:
    before = fake_upstream.request_count
    with pytest.raises(openai.InternalServerError) as err:
        create(sdk, "quota", False)
    assert fake_upstream.request_count - before == 1
    assert (err.value.status_code, err.value.code) == (502, "upstream_error")
    assert "retry-after" not in err.value.response.headers


def test_every_breaker_open_is_503_provider_unavailable(
    sdk: openai.OpenAI, refusals: Refusals, fake_upstream: FakeUpstreamThread
) -> None:
    for _ in range(5):  # five consecutive failures open the row's circuit (§14.2)
        with pytest.raises(openai.InternalServerError) as failed:
            create(sdk, "circuit", False)
        assert failed.value.code == "upstream_error"
    before = fake_upstream.request_count
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as err:
            create(sdk, "circuit", stream)
        error = err.value
        assert (error.status_code, error.code, error.type) == (503, "provider_unavailable", "server_error")
        assert 1 <= int(error.response.headers["retry-after"]) <= 30
        assert "circuit open" in error.message
        rows = logs_for(refusals.tenant, error.response.headers["x-request-id"], expected=1, timeout=0.3)
        assert rows == []  # a skipped row is not an attempt: nothing logged
    assert fake_upstream.request_count == before
    assert _balance(refusals.tenant) == refusals.balance_usd
