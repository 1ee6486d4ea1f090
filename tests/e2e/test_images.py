"""Image generation end to end (SPEC §7.7): the official openai SDK's ``images.generate`` through openai and
openai_compatible providers, the ASI:One alias route through an asi1 provider, billing per image on the wallet,
the budget (with markup) and the usage log, refusals before any upstream call, and fallback on an upstream 500.
Runs on SQLite and PostgreSQL (the ``gateway`` fixture's STORES)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.support.invariants import assert_invariants
from tests.support.seed import (
    FAKE_PROVIDER_KEY,
    Tenant,
    add_config,
    create_end_user,
    create_model,
    create_provider,
    create_tenant,
    logs_for,
)
from tests.support.servers import GatewayServer
from tollway.fake_upstream.images import HOSTED_URL, PNG_B64
from tollway.fake_upstream.server import FakeUpstreamThread

DATA_URL = "data:image/png;base64," + PNG_B64
PROMPT = "a red fox in the snow"


@dataclass(frozen=True)
class Stack:
    tenant: Tenant
    openai_slug: str
    compat_slug: str
    asi1_slug: str


def _image_model(admin: httpx.Client, provider_id: str, slug: str, upstream: str, price: str, **extra: Any) -> None:
    create_model(admin, provider_id, slug, upstream, price_per_image=price, **extra)


@pytest.fixture(scope="module")
def stack(admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread) -> Iterator[Stack]:
    native = create_provider(admin, fake_upstream.dialect_base_url("openai"), kind="openai")
    compat = create_provider(admin, fake_upstream.dialect_base_url("openai"), kind="openai_compatible")
    asi1 = create_provider(admin, fake_upstream.dialect_base_url("asi1"), kind="asi1")
    _image_model(admin, native["id"], "img", "fake/default", "0.04")
    _image_model(admin, native["id"], "img-one", "fake/default?n=1", "0.04")  # returns one image, whatever n is
    create_model(admin, native["id"], "chat-only", "fake/default")
    _image_model(admin, compat["id"], "img-compat", "fake/default", "0.03")
    _image_model(admin, asi1["id"], "asi-img", "asi1-mini", "0.01", priority=0)  # the alias route's default
    _image_model(admin, native["id"], "img-fallback", "fake/error?status=500", "0.05", priority=0)
    _image_model(admin, compat["id"], "img-fallback", "fake/default", "0.02", priority=1)
    _image_model(admin, native["id"], "img-bad-size", "fake/error?status=400&param=size", "0.05")
    _image_model(admin, compat["id"], "img-limited", "fake/error?status=429&retry_after=0", "0.05")
    _image_model(admin, asi1["id"], "asi-img-limited", "fake/error?status=429&retry_after=3600", "0.05", priority=1)
    tenant = create_tenant(admin, gateway.url, native["id"], native["slug"], topup="10")
    add_config(tenant, compat["id"])
    add_config(tenant, asi1["id"])
    yield Stack(tenant, native["slug"], compat["slug"], asi1["slug"])
    tenant.client.close()


@pytest.fixture
def sdk(gateway: GatewayServer, stack: Stack) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=stack.tenant.platform_key, max_retries=0, timeout=30)
    yield client
    client.close()


def _balance(tenant: Tenant) -> float:
    value: float = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()["balance_usd"]
    return value


def _last_upstream(fake: FakeUpstreamThread, path_end: str) -> dict[str, Any]:
    recorded = [r for r in fake.requests if r.path.endswith(path_end)]
    assert recorded, f"no upstream request to {path_end}"
    return recorded[-1].to_json()


def test_openai_b64_json_billed_per_image(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread, gateway: GatewayServer
) -> None:
    before = _balance(stack.tenant)
    raw = sdk.images.with_raw_response.generate(model="img", prompt=PROMPT, n=2, response_format="b64_json")
    images = raw.parse()
    assert [d.b64_json for d in images.data or []] == [PNG_B64, PNG_B64]
    assert all(d.url is None for d in images.data or [])
    assert raw.headers["x-tollway-provider"] == stack.openai_slug
    sent = _last_upstream(fake_upstream, "/images/generations")
    assert sent["path"] == "/v1/images/generations"
    assert sent["headers"]["authorization"] == f"Bearer {FAKE_PROVIDER_KEY}"
    assert sent["body"] == {"model": "fake/default", "prompt": PROMPT, "n": 2, "response_format": "b64_json"}
    rows = logs_for(stack.tenant, raw.headers["x-request-id"])
    assert len(rows) == 1
    row = rows[0]
    assert row["request_type"] == "image" and row["status"] == "success" and row["model"] == "img"
    assert row["cost_usd"] == 0.08 and row["charged_usd"] is None  # 2 × $0.04, platform key
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"], row["cached_tokens"]) == (0, 0, 0, 0)
    assert row["provider_model"] == "fake/default"
    assert round((before - _balance(stack.tenant)) * 10**9) == 80_000_000
    ledger = stack.tenant.client.get(f"/v1/platforms/{stack.tenant.platform_id}/wallet").json()
    assert ledger["recent_transactions"][0]["description"] == "img: 2 images"
    assert_invariants(gateway.settings)


def test_url_is_a_data_url_when_the_provider_answers_base64(
    sdk: openai.OpenAI, fake_upstream: FakeUpstreamThread
) -> None:
    images = sdk.images.generate(model="img", prompt=PROMPT)
    assert [d.url for d in images.data or []] == [DATA_URL]
    assert images.data is not None and images.data[0].revised_prompt == PROMPT
    assert images.created > 1_600_000_000
    # the client chose no format: none is forwarded (gpt-image-1 refuses the field)
    assert "response_format" not in _last_upstream(fake_upstream, "/images/generations")["body"]


def test_hosted_url_passes_through(sdk: openai.OpenAI) -> None:
    images = sdk.images.generate(model="img", prompt=PROMPT, response_format="url", size="1024x1024")
    assert images.data is not None and len(images.data) == 1
    url = images.data[0].url
    assert url is not None and url.startswith(HOSTED_URL.split("{")[0]) and url.endswith("-0.png")


def test_cost_counts_images_returned(sdk: openai.OpenAI, stack: Stack) -> None:
    raw = sdk.images.with_raw_response.generate(model="img-one", prompt=PROMPT, n=3, response_format="b64_json")
    assert len(raw.parse().data or []) == 1
    rows = logs_for(stack.tenant, raw.headers["x-request-id"])
    assert rows[0]["cost_usd"] == 0.04  # held 3 × $0.04, captured 1 × $0.04


def test_openai_compatible_forwards_quality_and_style(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    raw = sdk.images.with_raw_response.generate(
        model="img-compat", prompt=PROMPT, quality="hd", style="vivid", size="1792x1024", user="end-42"
    )
    assert [d.url for d in raw.parse().data or []] == [DATA_URL]
    assert raw.headers["x-tollway-provider"] == stack.compat_slug
    sent = _last_upstream(fake_upstream, "/images/generations")["body"]
    assert sent == {
        "model": "fake/default",
        "prompt": PROMPT,
        "n": 1,
        "size": "1792x1024",
        "quality": "hd",
        "style": "vivid",
        "user": "end-42",
    }
    assert logs_for(stack.tenant, raw.headers["x-request-id"])[0]["cost_usd"] == 0.03


def test_asi1_alias_route(gateway: GatewayServer, stack: Stack, fake_upstream: FakeUpstreamThread) -> None:
    response = stack.tenant.client.post(
        "/v1/image/generate", json={"prompt": PROMPT, "size": "1792x1024", "model": "asi-img"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == 1 and body["message"] == "Success"
    assert body["created"] > 10**11  # Unix milliseconds
    assert body["images"] == [{"url": DATA_URL}]
    assert response.headers["x-tollway-provider"] == stack.asi1_slug
    sent = _last_upstream(fake_upstream, "/image/generate")
    assert sent["path"] == "/asi1/v1/image/generate"
    assert sent["headers"]["authorization"] == f"Bearer {FAKE_PROVIDER_KEY}"
    assert sent["body"] == {"prompt": PROMPT, "model": "asi1-mini", "size": "1792x1024"}
    row = logs_for(stack.tenant, response.headers["x-request-id"])[0]
    assert (row["request_type"], row["model"], row["cost_usd"]) == ("image", "asi-img", 0.01)


def test_asi1_alias_without_model_uses_the_lowest_priority_slug(stack: Stack) -> None:
    response = stack.tenant.client.post("/v1/image/generate", json={"prompt": PROMPT})
    assert response.status_code == 200, response.text
    row = logs_for(stack.tenant, response.headers["x-request-id"])[0]
    assert row["model"] == "asi-img"  # priority 0, and "asi-img" < "img-fallback"


def test_asi1_alias_on_an_openai_row_answers_a_data_url(stack: Stack) -> None:
    response = stack.tenant.client.post("/v1/image/generate", json={"prompt": PROMPT, "model": "img"})
    assert response.status_code == 200, response.text
    assert response.json()["images"] == [{"url": DATA_URL}]


def test_openai_shape_through_asi1_provider(sdk: openai.OpenAI, fake_upstream: FakeUpstreamThread) -> None:
    images = sdk.images.generate(model="asi-img", prompt=PROMPT, response_format="b64_json")
    assert [d.b64_json for d in images.data or []] == [PNG_B64]  # ASI:One's data URL, unwrapped
    before = fake_upstream.request_count
    with pytest.raises(openai.BadRequestError) as error:
        sdk.images.generate(model="asi-img", prompt=PROMPT, n=2)
    assert error.value.code == "unsupported_parameter"
    assert error.value.body["param"] == "n"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as error:
        sdk.images.generate(model="asi-img", prompt=PROMPT, quality="hd")
    assert error.value.body["param"] == "quality"  # type: ignore[index]
    assert fake_upstream.request_count == before


def test_model_without_image_price_is_404(sdk: openai.OpenAI, fake_upstream: FakeUpstreamThread) -> None:
    before = fake_upstream.request_count
    for model in ("chat-only", "no-such-model"):
        with pytest.raises(openai.NotFoundError) as error:
            sdk.images.generate(model=model, prompt=PROMPT)
        assert error.value.code == "model_not_found"
    assert fake_upstream.request_count == before


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/images/generations", {"model": "img", "prompt": PROMPT, "n": 9}, "n"),
        ("/v1/images/generations", {"model": "img", "prompt": PROMPT, "output_format": "png"}, "output_format"),
        ("/v1/images/generations", {"model": "img", "prompt": ""}, "prompt"),
        ("/v1/images/generations", {"model": "img", "prompt": PROMPT, "size": "huge"}, "size"),
        ("/v1/image/generate", {"prompt": PROMPT, "size": "512x512"}, "size"),
        ("/v1/image/generate", {"prompt": PROMPT, "n": 1}, "n"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(stack: Stack, path: str, body: dict[str, Any], param: str) -> None:
    response = stack.tenant.client.post(path, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"], error["param"]) == ("invalid_request", "invalid_request_error", param)
    assert response.headers["x-request-id"].startswith("req_")


def test_fallback_on_upstream_500(sdk: openai.OpenAI, stack: Stack, gateway: GatewayServer) -> None:
    raw = sdk.images.with_raw_response.generate(model="img-fallback", prompt=PROMPT)
    assert [d.url for d in raw.parse().data or []] == [DATA_URL]
    assert raw.headers["x-tollway-provider"] == stack.compat_slug
    rows = logs_for(stack.tenant, raw.headers["x-request-id"], expected=2)
    by_status = {r["status"]: r for r in rows}
    assert len(rows) == 2 and set(by_status) == {"error", "success"}
    assert by_status["error"]["cost_usd"] == 0 and by_status["error"]["error_code"] == "upstream_error"
    assert by_status["error"]["provider_model"] == "fake/error?status=500"
    assert by_status["success"]["cost_usd"] == 0.02  # billed at the serving row's price
    assert_invariants(gateway.settings)


def test_upstream_refusals_map_as_for_chat(
    sdk: openai.OpenAI, stack: Stack, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> None:
    """SPEC §3, §14.2 on the image routes: a refusal keeps the provider's status and param and is not retried; a
    persisting 429 is upstream_rate_limited with Retry-After, on the OpenAI route and on ASI:One's alias."""
    before = fake_upstream.request_count
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.images.generate(model="img-bad-size", prompt=PROMPT)
    assert (bad.value.code, bad.value.param, bad.value.type) == (
        "upstream_invalid_request",
        "size",
        "invalid_request_error",
    )
    assert fake_upstream.request_count - before == 1
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.images.generate(model="img-limited", prompt=PROMPT)
    assert (limited.value.code, limited.value.response.headers["retry-after"]) == ("upstream_rate_limited", "1")
    assert fake_upstream.request_count - before == 1 + 3
    rows = logs_for(stack.tenant, limited.value.response.headers["x-request-id"], expected=3)
    assert [(r["status"], r["cost_usd"]) for r in rows] == [("error", 0)] * 3
    alias = stack.tenant.client.post("/v1/image/generate", json={"prompt": PROMPT, "model": "asi-img-limited"})
    assert (alias.status_code, alias.json()["error"]["code"]) == (429, "upstream_rate_limited")
    assert alias.headers["retry-after"] == "3600"  # the provider's own (too long to wait for: one attempt)
    assert fake_upstream.request_count - before == 1 + 3 + 1
    assert_invariants(gateway.settings)


def test_end_user_budget_charged_with_markup(
    admin: httpx.Client, gateway: GatewayServer, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    tenant = create_tenant(admin, gateway.url, stack.tenant.provider_id, stack.openai_slug, topup="1")
    settings = tenant.client.patch(f"/v1/platforms/{tenant.platform_id}", json={"settings": {"markup_percentage": 15}})
    assert settings.status_code == 200, settings.text
    time.sleep(1.0)  # platform settings apply to requests admitted ≥ 1 s later
    user_id, key = create_end_user(tenant, "1")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30)
    raw = client.images.with_raw_response.generate(model="img", prompt=PROMPT, n=2, response_format="b64_json")
    assert len(raw.parse().data or []) == 2
    row = logs_for(tenant, raw.headers["x-request-id"])[0]
    # cost 2 × $0.04 = $0.08; charge ⌈cost · (10⁴ + 1500) / 10⁴⌉ = $0.092
    assert (row["cost_usd"], row["charged_usd"], row["end_user_id"]) == (0.08, 0.092, user_id)
    me = httpx.get(gateway.url + "/v1/me/budget", headers={"Authorization": f"Bearer {key}"}).json()
    assert me["used_usd"] == 0.092
    assert _balance(tenant) == 0.92
    # n × price with markup is $0.092: a $0.09 budget refuses it before any upstream call (never clamped)
    _, poor_key = create_end_user(tenant, "0.09")
    poor = openai.OpenAI(base_url=gateway.url + "/v1", api_key=poor_key, max_retries=0, timeout=30)
    before = fake_upstream.request_count
    with pytest.raises(openai.APIStatusError) as error:
        poor.images.generate(model="img", prompt=PROMPT, n=2)
    assert error.value.status_code == 402 and error.value.code == "budget_exhausted"
    assert fake_upstream.request_count == before
    assert_invariants(gateway.settings)
    client.close()
    poor.close()
    tenant.client.close()


def test_wallet_insufficient_is_402_with_no_upstream_call(
    admin: httpx.Client, gateway: GatewayServer, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    tenant = create_tenant(admin, gateway.url, stack.tenant.provider_id, stack.openai_slug, topup="0.05")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=tenant.platform_key, max_retries=0, timeout=30)
    prompt = f"{PROMPT} ({tenant.platform_id})"  # recognisable upstream, whatever else the shared fake serves
    with pytest.raises(openai.APIStatusError) as error:
        client.images.generate(model="img", prompt=prompt, n=2)  # hold 2 × $0.04 > $0.05; never clamped
    assert error.value.status_code == 402 and error.value.code == "wallet_insufficient"
    assert not any(isinstance(r.body, dict) and r.body.get("prompt") == prompt for r in fake_upstream.requests)
    assert tenant.client.get(f"/v1/platforms/{tenant.platform_id}/logs").json()["data"] == []
    assert client.images.generate(model="img", prompt=PROMPT).data  # one image fits
    assert_invariants(gateway.settings)
    client.close()
    tenant.client.close()


def test_rpm_counts_image_calls(gateway: GatewayServer, stack: Stack) -> None:
    user_id, key = create_end_user(stack.tenant, None)
    path = f"/v1/platforms/{stack.tenant.platform_id}/end-users/{user_id}/rate-limits"
    limits = stack.tenant.client.put(path, json={"rpm_limit": 1, "tpm_limit": 1})
    assert limits.status_code == 200, limits.text
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "img", "prompt": PROMPT}
    first = httpx.post(gateway.url + "/v1/images/generations", json=body, headers=headers, timeout=30)
    assert first.status_code == 200, first.text  # an image call needs no tokens: TPM 1 admits it
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    second = httpx.post(gateway.url + "/v1/images/generations", json=body, headers=headers, timeout=30)
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(second.headers["retry-after"]) >= 1
