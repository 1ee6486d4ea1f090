"""The official openai SDK against Tollway: models, chat non-stream and stream, billing rows, errors."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from tests.support.seed import (
    FAKE_PROVIDER_KEY,
    Tenant,
    create_model,
    create_provider,
    create_tenant,
    logs_for,
)
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

USER = [{"role": "user", "content": "Hello, Tollway!"}]


def test_models_list_shows_usable_slugs_sorted(sdk: openai.OpenAI, tenant: Tenant) -> None:
    ids = [m.id for m in sdk.models.list().data]
    assert ids == sorted(ids)
    assert {"chat", "echo", "usage"} <= set(ids)
    model = sdk.models.retrieve("echo")
    assert model.owned_by == tenant.provider_slug
    with pytest.raises(openai.NotFoundError) as err:
        sdk.models.retrieve("no-such-model")
    assert err.value.code == "model_not_found"


def test_chat_non_stream_exact_text_and_usage(sdk: openai.OpenAI, tenant: Tenant) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="echo", messages=USER)
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "echo"
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content == "Hello, Tollway!"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert raw.headers["x-tollway-provider"] == tenant.provider_slug
    assert raw.headers["x-request-id"].startswith("req_") and len(raw.headers["x-request-id"]) == 36


def test_exact_cost_logged_and_debited_once(sdk: openai.OpenAI, tenant: Tenant) -> None:
    before = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()["balance_usd"]
    raw = sdk.chat.completions.with_raw_response.create(model="usage", messages=USER)
    completion = raw.parse()
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 6)
    rows = logs_for(tenant, raw.headers["x-request-id"])
    assert len(rows) == 1
    row = rows[0]
    # 5 × $0.15/Mtok + 6 × $0.60/Mtok = 4,350 n$ exactly (SPEC §9.2)
    assert row["cost_usd"] == 0.00000435
    assert row["status"] == "success" and row["token_count_method"] == "reported"
    assert row["end_user_id"] is None and row["charged_usd"] is None
    assert row["model"] == "usage" and row["provider_model"] == "fake/usage?in=5&out=6"
    after = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()["balance_usd"]
    assert round((before - after) * 10**9) == 4350


def test_spec_example_cost_with_cached_tokens(sdk: openai.OpenAI, tenant: Tenant) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="cached", messages=USER)
    rows = logs_for(tenant, raw.headers["x-request-id"])
    # SPEC §9.2: 1,200 prompt (200 cached) + 300 completion at $0.15 / $0.075 / $0.60 per Mtok
    assert rows[0]["cost_usd"] == 0.000345
    assert rows[0]["cached_tokens"] == 200


def test_stream_exact_text_without_usage_chunk(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(model="echo", messages=USER, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, Tollway!"
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert {c.model for c in chunks} == {"echo"}
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_usage_chunk_only_when_asked(sdk: openai.OpenAI, tenant: Tenant) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="usage", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, 6)
    assert raw.headers["content-type"].startswith("text/event-stream")
    rows = logs_for(tenant, raw.headers["x-request-id"])
    assert len(rows) == 1 and rows[0]["cost_usd"] == 0.00000435 and rows[0]["ttft_ms"] is not None


def test_stream_raw_bytes_end_with_done(gateway: Any, tenant: Tenant) -> None:
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"model": "echo", "messages": USER, "stream": True},
        headers={"Authorization": f"Bearer {tenant.platform_key}"},
    ) as response:
        body = b"".join(response.iter_bytes())
    assert body.endswith(b"data: [DONE]\n\n")
    assert response.headers["cache-control"] == "no-cache"


def test_unreported_usage_is_estimated(sdk: openai.OpenAI, tenant: Tenant) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="no-usage", messages=USER)
    rows = logs_for(tenant, raw.headers["x-request-id"])
    assert rows[0]["token_count_method"] == "estimated"
    # "Hello, Tollway!" is 15 bytes -> ⌈15/4⌉ = 4 completion tokens
    assert rows[0]["completion_tokens"] == 4
    assert rows[0]["cost_usd"] > 0


def test_tool_call_round_trip(sdk: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    completion = sdk.chat.completions.create(model="tool", messages=USER, tools=tools)
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and call.function.arguments == '{"city":"Paris"}'
    follow = sdk.chat.completions.create(
        model="echo",
        tools=tools,
        messages=[
            *USER,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
            {"role": "user", "content": "thanks"},
        ],
    )
    assert follow.choices[0].message.content == "thanks"
    streamed = list(sdk.chat.completions.create(model="tool", messages=USER, tools=tools, stream=True))
    args = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""  # type: ignore[index, union-attr]
        for c in streamed
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert args == '{"city":"Paris"}'


def test_stream_cut_ends_with_error_event_and_is_billed_once(gateway: Any, tenant: Tenant) -> None:
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"model": "cut", "messages": USER, "stream": True},
        headers={"Authorization": f"Bearer {tenant.platform_key}"},
    ) as response:
        body = b"".join(response.iter_bytes())
        request_id = response.headers["x-request-id"]
    assert b"[DONE]" not in body
    assert body.rstrip().splitlines()[-1].startswith(b'data: {"error"')
    rows = logs_for(tenant, request_id)
    assert len(rows) == 1
    assert rows[0]["status"] == "interrupted" and rows[0]["error_code"] == "upstream_error"
    assert rows[0]["cost_usd"] > 0


def test_upstream_400_is_upstream_invalid_request_at_once(
    sdk: openai.OpenAI, fake_upstream: FakeUpstreamThread
) -> None:
    before = fake_upstream.request_count
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="bad-request", messages=USER)
    assert (err.value.status_code, err.value.code, err.value.type) == (
        400,
        "upstream_invalid_request",
        "invalid_request_error",
    )
    assert "rejected the request: fake upstream: simulated HTTP 400" in err.value.message
    assert fake_upstream.request_count - before == 1


def test_upstream_429_retried_then_upstream_rate_limited(sdk: openai.OpenAI, fake_upstream: FakeUpstreamThread) -> None:
    before = fake_upstream.request_count
    with pytest.raises(openai.RateLimitError) as err:
        sdk.chat.completions.create(model="rate-limited", messages=USER)
    assert (err.value.status_code, err.value.code) == (429, "upstream_rate_limited")
    assert err.value.response.headers["retry-after"] == "1"  # the provider sent none
    assert fake_upstream.request_count - before == 3  # the first try and two retries (SPEC §14.2)


def test_malformed_upstream_answer_is_upstream_error(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        sdk.chat.completions.create(model="broken", messages=USER)
    assert err.value.status_code == 502 and err.value.code == "upstream_error"


def test_provider_key_reaches_upstream_but_never_the_client(
    sdk: openai.OpenAI, tenant: Tenant, fake_upstream: FakeUpstreamThread, caplog: pytest.LogCaptureFixture
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="echo", messages=USER)
    assert fake_upstream.requests[-1].headers["authorization"] == f"Bearer {FAKE_PROVIDER_KEY}"
    assert FAKE_PROVIDER_KEY not in raw.http_response.text
    with pytest.raises(openai.APIStatusError) as err:
        sdk.chat.completions.create(model="bad-request", messages=USER)
    assert FAKE_PROVIDER_KEY not in str(err.value.body)
    configs = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/llm-configs").text
    assert FAKE_PROVIDER_KEY not in configs
    assert all(FAKE_PROVIDER_KEY not in record.getMessage() for record in caplog.records)


def test_a_non_streaming_call_whose_client_leaves_is_billed_in_full_and_logged_interrupted(
    gateway: Any, tenant: Tenant
) -> None:
    """SPEC §7.3: the call runs to completion, is billed in full, and its log row says ``interrupted``."""
    before = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()["balance_usd"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "slow-usage", "messages": USER},
            headers={"Authorization": f"Bearer {tenant.platform_key}"},
            timeout=0.2,
        )
    deadline = time.monotonic() + 5
    rows: list[dict[str, Any]] = []
    while not rows and time.monotonic() < deadline:
        time.sleep(0.05)
        page = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/logs", params={"model": "slow-usage"})
        rows = page.json()["data"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["finish_reason"], row["error_code"]) == ("interrupted", "stop", None)
    assert (row["prompt_tokens"], row["completion_tokens"], row["token_count_method"]) == (5, 6, "reported")
    cost = row["cost_usd"]
    assert cost == 0.00000435  # 5 × $0.15 + 6 × $0.60 per Mtok
    after = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()["balance_usd"]
    assert round((before - after) * 10**9) == 4350


def test_a_cookie_a_provider_sets_never_travels_on_a_later_call(
    admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> None:
    """One upstream session serves every tenant: a provider's Set-Cookie (the fake sends one on every answer, as
    CDNs in front of real providers do) must not reach the provider again, least of all on another tenant's call.
    The provider is addressed by host name, since cookie jars ignore cookies from bare IP addresses."""
    provider = create_provider(admin, fake_upstream.base_url.replace("127.0.0.1", "localhost"))
    create_model(admin, provider["id"], "cookie-check", "fake/default")
    first = create_tenant(admin, gateway.url, provider["id"], provider["slug"])
    second = create_tenant(admin, gateway.url, provider["id"], provider["slug"])
    try:
        for tenant in (first, second, first):
            response = tenant.client.post("/v1/chat/completions", json={"model": "cookie-check", "messages": USER})
            assert response.status_code == 200, response.text
            assert "set-cookie" not in response.headers
            assert "cookie" not in fake_upstream.requests[-1].headers
    finally:
        first.client.close()
        second.client.close()
