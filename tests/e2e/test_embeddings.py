"""Embeddings and moderations end to end (SPEC §19): the official openai SDK's ``embeddings.create`` (its default
``encoding_format`` is base64) and ``moderations.create`` through openai, openai_compatible and gemini providers;
exact billing on the wallet, the budget (with markup) and the usage log; refusals before any upstream call;
upstream failures mapped as for chat. Runs on SQLite and PostgreSQL (the ``gateway`` fixture's STORES)."""

from __future__ import annotations

import base64
import struct
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
from tollway.fake_upstream.embeddings import fake_prompt_tokens, fake_vector
from tollway.fake_upstream.server import FakeUpstreamThread

EMBEDDING = {"output_price_per_mtok": "0", "max_output_tokens": 1}
MODERATION = {"input_price_per_mtok": "0", "output_price_per_mtok": "0", "max_output_tokens": 1}


@dataclass(frozen=True)
class Stack:
    tenant: Tenant
    openai_slug: str
    compat_slug: str
    gemini_slug: str


@pytest.fixture(scope="module")
def stack(admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread) -> Iterator[Stack]:
    native = create_provider(admin, fake_upstream.dialect_base_url("openai"), kind="openai")
    compat = create_provider(admin, fake_upstream.dialect_base_url("openai"), kind="openai_compatible")
    gemini = create_provider(admin, fake_upstream.dialect_base_url("gemini"), kind="gemini")
    asi1 = create_provider(admin, fake_upstream.dialect_base_url("asi1"), kind="asi1")
    emb = {**EMBEDDING, "input_price_per_mtok": "0.02", "context_window": 8192}
    create_model(admin, native["id"], "emb", "text-embedding-3-small", **emb)
    create_model(
        admin, native["id"], "emb-1000", "fake/default?in=1000", **{**EMBEDDING, "input_price_per_mtok": "0.13"}
    )
    create_model(admin, compat["id"], "emb-estimated", "fake/default?no_usage=1", **emb)
    create_model(
        admin, gemini["id"], "emb-gemini", "gemini-embedding-001", **{**EMBEDDING, "input_price_per_mtok": "0.15"}
    )
    create_model(admin, asi1["id"], "emb-asi", "asi1-mini", **emb)
    create_model(admin, gemini["id"], "emb-gemini-long", "fake/error?status=400&type=context_length_exceeded", **emb)
    create_model(admin, native["id"], "emb-fallback", "fake/error?status=500", **emb, priority=0)
    create_model(admin, compat["id"], "emb-fallback", "fake/default", **emb, priority=1)
    create_model(admin, native["id"], "emb-bad", "fake/error?status=400&param=input", **emb)
    create_model(admin, native["id"], "emb-garbage", "fake/garbage", **emb)
    create_model(admin, native["id"], "emb-limited", "fake/error?status=429&retry_after=0", **emb)
    create_model(admin, native["id"], "emb-tiny-window", "fake/default?in=3", **{**emb, "context_window": 2})
    create_model(
        admin, native["id"], "omni-moderation-latest", "omni-moderation-latest", **MODERATION, price_per_request="0"
    )
    create_model(admin, compat["id"], "mod-paid", "fake/default", **MODERATION, price_per_request="0.001", priority=200)
    create_model(
        admin,
        native["id"],
        "mod-broken",
        "fake/error?status=500",
        **MODERATION,
        price_per_request="0.001",
        priority=300,
    )
    tenant = create_tenant(admin, gateway.url, native["id"], native["slug"], topup="10")
    for provider in (compat, gemini, asi1):
        add_config(tenant, provider["id"])
    yield Stack(tenant, native["slug"], compat["slug"], gemini["slug"])
    tenant.client.close()


@pytest.fixture
def sdk(gateway: GatewayServer, stack: Stack) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=stack.tenant.platform_key, max_retries=0, timeout=30)
    yield client
    client.close()


def _balance_nanos(tenant: Tenant) -> int:
    return round(tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()["balance_usd"] * 10**9)


def _sent(fake: FakeUpstreamThread, path_end: str) -> list[dict[str, Any]]:
    return [r.to_json() for r in fake.requests if r.path.endswith(path_end)]


def _float32(values: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def test_sdk_default_base64_call_returns_the_vectors_and_bills_prompt_tokens(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread, gateway: GatewayServer
) -> None:
    before = _balance_nanos(stack.tenant)
    text = "The quick brown fox jumps over the lazy dog"
    raw = sdk.embeddings.with_raw_response.create(model="emb", input=text)
    answer = raw.parse()
    assert answer.model == "emb" and answer.object == "list"
    assert [d.embedding for d in answer.data] == [fake_vector(text)]
    assert [d.index for d in answer.data] == [0]
    tokens = fake_prompt_tokens(text)  # 11
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (tokens, tokens)
    assert raw.headers["x-tollway-provider"] == stack.openai_slug
    sent = _sent(fake_upstream, "/embeddings")[-1]
    assert sent["path"] == "/v1/embeddings"
    assert sent["headers"]["authorization"] == f"Bearer {FAKE_PROVIDER_KEY}"
    assert sent["body"] == {"model": "text-embedding-3-small", "input": text, "encoding_format": "base64"}
    (row,) = logs_for(stack.tenant, raw.headers["x-request-id"])
    assert (row["request_type"], row["status"], row["model"], row["provider_model"]) == (
        "embedding",
        "success",
        "emb",
        "text-embedding-3-small",
    )
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (tokens, 0, tokens)
    assert row["token_count_method"] == "reported" and row["charged_usd"] is None  # platform key
    # 11 tokens × $0.02 / Mtok = 11 × 20,000,000 / 10⁶ n$ = 220 n$
    assert row["cost_usd"] == 0.00000022
    assert before - _balance_nanos(stack.tenant) == 220
    wallet = stack.tenant.client.get(f"/v1/platforms/{stack.tenant.platform_id}/wallet").json()
    assert wallet["recent_transactions"][0]["description"] == f"emb: {tokens} in"
    assert_invariants(gateway.settings)


def test_base64_on_the_wire_is_float32_little_endian(stack: Stack) -> None:
    response = stack.tenant.client.post(
        "/v1/embeddings", json={"model": "emb", "input": "hi", "encoding_format": "base64"}
    )
    assert response.status_code == 200, response.text
    encoded = response.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    assert base64.b64decode(encoded) == struct.pack("<8f", *fake_vector("hi"))


def test_float_lists_and_token_arrays(sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread) -> None:
    floats = sdk.embeddings.create(model="emb", input=["alpha", "beta gamma"], encoding_format="float")
    assert [d.embedding for d in floats.data] == [fake_vector("alpha"), fake_vector("beta gamma")]
    assert _sent(fake_upstream, "/embeddings")[-1]["body"]["encoding_format"] == "float"
    arrays = sdk.embeddings.create(model="emb", input=[[1, 2, 3], [40, 50]])
    assert [d.embedding for d in arrays.data] == [fake_vector([1, 2, 3]), fake_vector([40, 50])]
    assert arrays.usage.prompt_tokens == 5  # token arrays count exactly
    single = sdk.embeddings.create(model="emb", input=[7, 8, 9, 10])
    assert [d.embedding for d in single.data] == [fake_vector([7, 8, 9, 10])]
    assert _sent(fake_upstream, "/embeddings")[-1]["body"]["input"] == [7, 8, 9, 10]


def test_dimensions_and_user_are_forwarded(sdk: openai.OpenAI, fake_upstream: FakeUpstreamThread) -> None:
    answer = sdk.embeddings.create(model="emb", input="short", dimensions=4, user="end-42")
    assert [d.embedding for d in answer.data] == [fake_vector("short", 4)]
    body = _sent(fake_upstream, "/embeddings")[-1]["body"]
    assert (body["dimensions"], body["user"]) == (4, "end-42")


def test_reported_usage_is_billed_exactly(sdk: openai.OpenAI, stack: Stack) -> None:
    raw = sdk.embeddings.with_raw_response.create(model="emb-1000", input="x")
    assert raw.parse().usage.prompt_tokens == 1000
    (row,) = logs_for(stack.tenant, raw.headers["x-request-id"])
    # 1000 × $0.13 / Mtok = $0.00013
    assert (row["prompt_tokens"], row["cost_usd"], row["token_count_method"]) == (1000, 0.00013, "reported")


def test_missing_usage_is_estimated(sdk: openai.OpenAI, stack: Stack) -> None:
    text = "x" * 41  # ⌈41 / 4⌉ = 11 tokens
    raw = sdk.embeddings.with_raw_response.create(model="emb-estimated", input=[text, "yz"])
    assert raw.parse().usage.prompt_tokens == 11  # ⌈(41 + 2) / 4⌉
    (row,) = logs_for(stack.tenant, raw.headers["x-request-id"])
    assert (row["prompt_tokens"], row["token_count_method"], row["cost_usd"]) == (11, "estimated", 0.00000022)


def test_gemini_batch_embed_contents(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread, gateway: GatewayServer
) -> None:
    before = _balance_nanos(stack.tenant)
    texts = [f"document number {i}" for i in range(150)]  # two batches: 100 + 50
    raw = sdk.embeddings.with_raw_response.create(model="emb-gemini", input=texts, dimensions=6)
    answer = raw.parse()
    assert raw.headers["x-tollway-provider"] == stack.gemini_slug
    assert [d.embedding for d in answer.data] == [fake_vector(t, 6) for t in texts]  # the SDK's base64, decoded
    assert [d.index for d in answer.data] == list(range(150))
    batches = _sent(fake_upstream, ":batchEmbedContents")[-2:]
    assert {b["path"] for b in batches} == {"/v1beta/models/gemini-embedding-001:batchEmbedContents"}
    assert all(b["headers"]["x-goog-api-key"] == FAKE_PROVIDER_KEY for b in batches)
    assert all("authorization" not in b["headers"] and "key=" not in b["query"] for b in batches)
    assert sorted(len(b["body"]["requests"]) for b in batches) == [50, 100]
    first = next(b for b in batches if len(b["body"]["requests"]) == 100)["body"]["requests"][0]
    assert first == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "document number 0"}]},
        "outputDimensionality": 6,
    }
    # Gemini reports no usage: ⌈Σ bytes / 4⌉, estimated (SPEC §9.4)
    tokens = -(-sum(len(t) for t in texts) // 4)
    assert answer.usage.prompt_tokens == tokens
    (row,) = logs_for(stack.tenant, raw.headers["x-request-id"])
    assert (row["request_type"], row["prompt_tokens"], row["token_count_method"]) == ("embedding", tokens, "estimated")
    cost = -(-tokens * 150_000_000 // 10**6)  # $0.15 / Mtok
    assert round(row["cost_usd"] * 10**9) == cost and before - _balance_nanos(stack.tenant) == cost
    floats = sdk.embeddings.create(model="emb-gemini", input="plain", encoding_format="float")
    assert floats.data[0].embedding == _float32(fake_vector("plain"))
    assert_invariants(gateway.settings)


def test_gemini_refusal_maps_as_for_chat(sdk: openai.OpenAI, fake_upstream: FakeUpstreamThread) -> None:
    before = fake_upstream.request_count
    with pytest.raises(openai.BadRequestError) as error:
        sdk.embeddings.create(model="emb-gemini-long", input="a very long text")
    assert error.value.code == "context_length_exceeded"
    assert fake_upstream.request_count - before == 1  # a request fault is returned at once (§14.2)


def test_gemini_refuses_token_arrays_before_any_call(sdk: openai.OpenAI, fake_upstream: FakeUpstreamThread) -> None:
    before = fake_upstream.request_count
    with pytest.raises(openai.BadRequestError) as error:
        sdk.embeddings.create(model="emb-gemini", input=[[1, 2, 3]])
    assert (error.value.code, error.value.param) == ("unsupported_parameter", "input")
    assert fake_upstream.request_count == before


@pytest.mark.parametrize("model", ["no-such-model", "emb-asi", "omni-moderation-latest"])
def test_models_that_do_not_embed_are_404(sdk: openai.OpenAI, fake_upstream: FakeUpstreamThread, model: str) -> None:
    before = fake_upstream.request_count
    with pytest.raises(openai.NotFoundError) as error:
        sdk.embeddings.create(model=model, input="hello")
    assert (error.value.code, error.value.param) == ("model_not_found", "model")
    assert fake_upstream.request_count == before


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "emb"}, "input"),
        ({"model": "emb", "input": ""}, "input"),
        ({"model": "emb", "input": []}, "input"),
        ({"model": "emb", "input": ["a", ""]}, "input[1]"),
        ({"model": "emb", "input": ["a", 1]}, "input[1]"),
        ({"model": "emb", "input": [[1, 2], [3, "x"]]}, "input[1][1]"),
        ({"model": "emb", "input": [[1], []]}, "input[1]"),
        ({"model": "emb", "input": [1, -2]}, "input[1]"),
        ({"model": "emb", "input": [True]}, "input[0]"),
        ({"model": "emb", "input": ["a"] * 2049}, "input"),
        ({"model": "emb", "input": {"text": "a"}}, "input"),
        ({"model": "emb", "input": "a", "dimensions": 0}, "dimensions"),
        ({"model": "emb", "input": "a", "dimensions": "8"}, "dimensions"),
        ({"model": "emb", "input": "a", "dimensions": 4.0}, "dimensions"),
        ({"model": "emb", "input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "emb", "input": "a", "user": 7}, "user"),
        ({"model": "emb", "input": "a", "temperature": 1}, "temperature"),
    ],
)
def test_bad_embedding_bodies_are_400_naming_the_field(
    stack: Stack, fake_upstream: FakeUpstreamThread, body: dict[str, Any], param: str
) -> None:
    before = fake_upstream.request_count
    response = stack.tenant.client.post("/v1/embeddings", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"], error["param"]) == ("invalid_request", "invalid_request_error", param)
    assert fake_upstream.request_count == before


def test_upstream_errors_map_as_for_chat(sdk: openai.OpenAI, stack: Stack, gateway: GatewayServer) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.embeddings.create(model="emb-bad", input="hello")
    assert (bad.value.code, bad.value.param) == ("upstream_invalid_request", "input")
    with pytest.raises(openai.InternalServerError) as garbage:
        sdk.embeddings.create(model="emb-garbage", input="hello")
    assert (garbage.value.status_code, garbage.value.code) == (502, "upstream_error")
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.embeddings.create(model="emb-limited", input="hello")
    assert (limited.value.code, limited.value.response.headers["retry-after"]) == ("upstream_rate_limited", "1")
    rows = logs_for(stack.tenant, limited.value.response.headers["x-request-id"], expected=3)
    assert [(r["status"], r["cost_usd"]) for r in rows] == [("error", 0)] * 3  # the first try and 2 retries
    raw = sdk.embeddings.with_raw_response.create(model="emb-fallback", input="hello")
    assert raw.headers["x-tollway-provider"] == stack.compat_slug
    rows = logs_for(stack.tenant, raw.headers["x-request-id"], expected=2)
    by_status = {r["status"]: r for r in rows}
    assert set(by_status) == {"error", "success"}
    assert (by_status["error"]["cost_usd"], by_status["error"]["error_code"]) == (0, "upstream_error")
    assert by_status["success"]["request_type"] == "embedding"
    assert_invariants(gateway.settings)


def test_end_user_charged_with_markup_and_refused_when_the_budget_cannot_hold(
    admin: httpx.Client, gateway: GatewayServer, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    tenant = create_tenant(admin, gateway.url, stack.tenant.provider_id, stack.openai_slug, topup="1")
    settings = tenant.client.patch(f"/v1/platforms/{tenant.platform_id}", json={"settings": {"markup_percentage": 15}})
    assert settings.status_code == 200, settings.text
    time.sleep(1.0)  # platform settings apply to requests admitted ≥ 1 s later
    user_id, key = create_end_user(tenant, "1")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30)
    raw = client.embeddings.with_raw_response.create(model="emb-1000", input="x")
    (row,) = logs_for(tenant, raw.headers["x-request-id"])
    # cost 1000 × $0.13 / Mtok = 130,000 n$; charge ⌈130,000 × 1.15⌉ = 149,500 n$
    assert (row["cost_usd"], row["charged_usd"], row["end_user_id"]) == (0.00013, 0.0001495, user_id)
    me = httpx.get(gateway.url + "/v1/me/budget", headers={"Authorization": f"Bearer {key}"}).json()
    assert me["used_usd"] == 0.0001495
    assert _balance_nanos(tenant) == 10**9 - 130_000
    base = f"/v1/platforms/{tenant.platform_id}"
    budget_rows = tenant.client.get(f"{base}/end-users/{user_id}/budget/transactions", params={"type": "inference"})
    assert [t["amount_usd"] for t in budget_rows.json()["data"]] == [-0.0001495]
    wallet_rows = tenant.client.get(f"{base}/wallet/transactions", params={"type": "usage"}).json()["data"]
    assert [(t["amount_usd"], t["description"]) for t in wallet_rows] == [(-0.00013, "emb-1000: 1000 in")]
    # "hello" holds 5 tokens × $0.02 / Mtok = 100 n$, 115 n$ with markup: a 100 n$ budget refuses it
    _, poor_key = create_end_user(tenant, "0.0000001")
    poor = openai.OpenAI(base_url=gateway.url + "/v1", api_key=poor_key, max_retries=0, timeout=30)
    before = fake_upstream.request_count
    with pytest.raises(openai.APIStatusError) as error:
        poor.embeddings.create(model="emb", input="hello")
    assert (error.value.status_code, error.value.code) == (402, "budget_exhausted")
    assert fake_upstream.request_count == before
    assert poor.embeddings.create(model="emb", input="hi").data  # 2 tokens: 46 n$ with markup, fits
    assert_invariants(gateway.settings)
    for each in (client, poor):
        each.close()
    tenant.client.close()


def test_hold_caps_each_input_at_the_context_window(
    admin: httpx.Client, gateway: GatewayServer, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    tenant = create_tenant(admin, gateway.url, stack.tenant.provider_id, stack.openai_slug, topup="0.000001")
    body = {"input": ["x" * 200, "y" * 200]}  # 400 bytes: a 400-token bound, 8,000 n$ at $0.02 / Mtok
    before = fake_upstream.request_count
    refused = tenant.client.post("/v1/embeddings", json={"model": "emb", **body})
    assert (refused.status_code, refused.json()["error"]["code"]) == (402, "wallet_insufficient")
    assert fake_upstream.request_count == before
    # context_window 2 caps each input at 2 tokens: a 4-token hold (80 n$) fits the 1,000 n$ wallet
    capped = tenant.client.post("/v1/embeddings", json={"model": "emb-tiny-window", **body})
    assert capped.status_code == 200, capped.text
    (row,) = logs_for(tenant, capped.headers["x-request-id"])
    assert (row["prompt_tokens"], row["cost_usd"]) == (3, 0.00000006)  # as reported: 3 × 20 n$
    assert _balance_nanos(tenant) == 1000 - 60
    assert_invariants(gateway.settings)
    tenant.client.close()


def test_tpm_counts_the_input_bound_and_rpm_counts_the_request(gateway: GatewayServer, stack: Stack) -> None:
    user_id, key = create_end_user(stack.tenant, None)
    path = f"/v1/platforms/{stack.tenant.platform_id}/end-users/{user_id}/rate-limits"
    assert stack.tenant.client.put(path, json={"rpm_limit": 2, "tpm_limit": 30}).status_code == 200
    headers = {"Authorization": f"Bearer {key}"}
    url = gateway.url + "/v1/embeddings"
    too_long = httpx.post(url, json={"model": "emb", "input": "y" * 31}, headers=headers, timeout=30)
    assert too_long.status_code == 429 and "token" in too_long.json()["error"]["message"].lower()
    first = httpx.post(url, json={"model": "emb", "input": "y" * 30}, headers=headers, timeout=30)
    assert first.status_code == 200, first.text
    assert (first.headers["x-ratelimit-limit-tokens"], first.headers["x-ratelimit-limit-requests"]) == ("30", "2")
    # the window was corrected to the 8 tokens billed (⌈30 / 4⌉), so a 20-token bound fits
    second = httpx.post(url, json={"model": "emb", "input": "y" * 20}, headers=headers, timeout=30)
    assert second.status_code == 200, second.text
    third = httpx.post(url, json={"model": "emb", "input": "y"}, headers=headers, timeout=30)
    assert third.status_code == 429 and "request" in third.json()["error"]["message"].lower()


def test_moderation_free_row(sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread) -> None:
    before = _balance_nanos(stack.tenant)
    raw = sdk.moderations.with_raw_response.create(
        model="omni-moderation-latest", input=["a calm sentence", "graphic violence"]
    )
    answer = raw.parse()
    assert answer.model == "omni-moderation-latest" and answer.id.startswith("modr-")
    assert [r.flagged for r in answer.results] == [False, True]
    assert answer.results[1].categories.violence is True
    sent = _sent(fake_upstream, "/moderations")[-1]
    assert sent["path"] == "/v1/moderations"
    assert sent["body"] == {"model": "omni-moderation-latest", "input": ["a calm sentence", "graphic violence"]}
    (row,) = logs_for(stack.tenant, raw.headers["x-request-id"])
    assert (row["request_type"], row["status"], row["cost_usd"], row["prompt_tokens"]) == (
        "moderation",
        "success",
        0,
        0,
    )
    assert _balance_nanos(stack.tenant) == before
    logs = f"/v1/platforms/{stack.tenant.platform_id}/logs"
    for kind in ("moderation", "embedding"):
        rows = stack.tenant.client.get(logs, params={"request_type": kind, "limit": 100}).json()["data"]
        assert rows and {r["request_type"] for r in rows} == {kind}


def test_moderation_without_model_uses_the_lowest_priority_slug(sdk: openai.OpenAI, stack: Stack) -> None:
    raw = sdk.moderations.with_raw_response.create(input="hello")
    assert raw.parse().model == "omni-moderation-latest"  # priority 100 < mod-paid's 200


def test_paid_moderation_with_markup_and_multimodal_input(
    admin: httpx.Client, gateway: GatewayServer, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    tenant = stack.tenant
    user_id, key = create_end_user(tenant, "1")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30)
    parts: Any = [
        {"type": "text", "text": "describe this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    raw = client.moderations.with_raw_response.create(model="mod-paid", input=parts)
    assert len(raw.parse().results) == 1
    assert raw.headers["x-tollway-provider"] == stack.compat_slug
    assert _sent(fake_upstream, "/moderations")[-1]["body"] == {"model": "fake/default", "input": parts}
    (row,) = logs_for(tenant, raw.headers["x-request-id"])
    assert (row["request_type"], row["cost_usd"], row["end_user_id"]) == ("moderation", 0.001, user_id)
    assert row["charged_usd"] == 0.001  # this platform has no markup
    me = httpx.get(gateway.url + "/v1/me/budget", headers={"Authorization": f"Bearer {key}"}).json()
    assert me["used_usd"] == 0.001
    wallet = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()
    assert any(t["description"] == "mod-paid: moderation" for t in wallet["recent_transactions"])
    assert_invariants(gateway.settings)
    client.close()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "omni-moderation-latest"}, "input"),
        ({"input": 5}, "input"),
        ({"input": []}, "input"),
        ({"input": [{"type": "audio"}]}, "input[0].type"),
        ({"input": [{"type": "text"}]}, "input[0].text"),
        ({"input": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}, "input[0].image_url.url"),
        ({"input": ["ok", {"type": "text", "text": "mixed"}]}, "input[0]"),
        ({"input": "x", "model": 3}, "model"),
        ({"input": "x", "threshold": 0.5}, "threshold"),
    ],
)
def test_bad_moderation_bodies_are_400_naming_the_field(stack: Stack, body: dict[str, Any], param: str) -> None:
    response = stack.tenant.client.post("/v1/moderations", json=body)
    assert response.status_code == 400, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == ("invalid_request", param)


def test_moderation_refusals(sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread) -> None:
    before = fake_upstream.request_count
    for model in ("emb", "no-such-model"):  # a row without price_per_request does not moderate
        with pytest.raises(openai.NotFoundError) as missing:
            sdk.moderations.create(model=model, input="hello")
        assert missing.value.code == "model_not_found"
    assert fake_upstream.request_count == before
    with pytest.raises(openai.InternalServerError) as failed:
        sdk.moderations.create(model="mod-broken", input="hello")
    assert (failed.value.status_code, failed.value.code) == (502, "upstream_error")
    rows = logs_for(stack.tenant, failed.value.response.headers["x-request-id"])  # a 500 is not retried (§14.2)
    assert [(r["request_type"], r["status"], r["cost_usd"]) for r in rows] == [("moderation", "error", 0)]
