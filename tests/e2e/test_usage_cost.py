"""SPEC §19 through the real stack, for every provider kind (the conformance rows): cached prompt tokens at the cached
price and Anthropic's cache writes at the cache-write price, exact to the nano-dollar with markup in the usage log,
the wallet ``usage`` row and the budget ``inference`` row; and ``usage.cost`` in every answer (chat, chat stream with
``include_usage``, Responses, Responses stream) equal to the call's ledger rows, as the official openai SDK reads it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.providers_conftest import ROWS, Row
from tests.support.invariants import assert_invariants
from tests.support.seed import Tenant, create_model, create_provider, create_tenant, logs_for
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

USER: Any = [{"role": "user", "content": "Hello, Tollway!"}]
# 7,000 prompt tokens of which 2,000 read from the cache and 4,000 written to it, 500 out; at $3 / $0.30 / $3.75 /
# $15 per Mtok (Anthropic's Sonnet prices). Only Anthropic's wire format reports cache writes.
CACHE_MODEL = "fake/usage?in=7000&out=500&cached=2000&cache_write=4000"
PRICES = {
    "input_price_per_mtok": "3",
    "output_price_per_mtok": "15",
    "cached_input_price_per_mtok": "0.3",
    "cache_write_price_per_mtok": "3.75",
}
MARKUP_PERCENT = 15


def expected(row: Row) -> tuple[str, str]:
    """(cost, charge) in USD, worked out by hand from §9.2 with §19's cache writes."""
    if row.kind == "anthropic":
        # 1000·3 + 2000·0.3 + 4000·3.75 + 500·15 = 26,100 µ$ -> $0.0261; × 1.15 = $0.030015
        return "0.0261", "0.030015"
    # no cache-write count on these wires: 5000·3 + 2000·0.3 + 500·15 = 23,100 µ$ -> $0.0231; × 1.15 = $0.026565
    return "0.0231", "0.026565"


@dataclass(frozen=True)
class Stack:
    row: Row
    tenant: Tenant
    end_user_id: str
    end_user_key: str


@pytest.fixture(scope="module", params=ROWS, ids=[r.id for r in ROWS])
def stack(
    request: pytest.FixtureRequest, admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> Iterator[Stack]:
    row: Row = request.param
    provider = create_provider(admin, fake_upstream.dialect_base_url(row.dialect), kind=row.kind)
    create_model(admin, provider["id"], "cache", CACHE_MODEL, **PRICES)
    tenant = create_tenant(admin, gateway.url, provider["id"], provider["slug"])
    patched = tenant.client.patch(
        f"/v1/platforms/{tenant.platform_id}", json={"settings": {"markup_percentage": MARKUP_PERCENT}}
    )
    assert patched.status_code == 200, patched.text
    user = _end_user(tenant, budget_usd="1")
    time.sleep(1.0)  # platform settings apply to requests admitted ≥ 1 s later
    yield Stack(row, tenant, user["id"], user["api_key"]["raw_key"])
    tenant.client.close()


def _end_user(tenant: Tenant, budget_usd: str) -> dict[str, Any]:
    created = tenant.client.post(
        f"/v1/platforms/{tenant.platform_id}/end-users", json={"external_id": f"eu-{uuid.uuid4().hex[:8]}"}
    )
    assert created.status_code == 201, created.text
    user: dict[str, Any] = created.json()
    budget = tenant.client.post(
        f"/v1/platforms/{tenant.platform_id}/end-users/{user['id']}/budget", json={"max_usd": budget_usd}
    )
    assert budget.status_code == 201, budget.text
    return user


def _client(gateway: GatewayServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30)


def _wallet_rows(tenant: Tenant, request_id: str) -> list[dict[str, Any]]:
    rows = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet/transactions", params={"limit": 100})
    return [r for r in rows.json()["data"] if r["request_id"] == request_id]


def _budget_rows(tenant: Tenant, end_user_id: str, request_id: str) -> list[dict[str, Any]]:
    path = f"/v1/platforms/{tenant.platform_id}/end-users/{end_user_id}/budget/transactions"
    rows = tenant.client.get(path, params={"limit": 100}).json()["data"]
    return [r for r in rows if r["request_id"] == request_id]


def _usd(value: object) -> Decimal:
    return Decimal(str(value))


def _settled(stack: Stack, request_id: str, *, end_user: bool) -> tuple[dict[str, Any], Decimal]:
    """The call's usage-log row, and what its ledger rows took from the caller (budget for end users, else wallet)."""
    (log,) = logs_for(stack.tenant, request_id)
    (wallet,) = _wallet_rows(stack.tenant, request_id)
    assert (wallet["type"], _usd(wallet["amount_usd"])) == ("usage", -_usd(log["cost_usd"]))
    if not end_user:
        return log, -_usd(wallet["amount_usd"])
    (budget,) = _budget_rows(stack.tenant, stack.end_user_id, request_id)
    assert budget["type"] == "inference" and _usd(budget["amount_usd"]) == -_usd(log["charged_usd"])
    return log, -_usd(budget["amount_usd"])


def _check_log(stack: Stack, log: dict[str, Any], *, end_user: bool) -> None:
    cost, charge = expected(stack.row)
    assert (log["prompt_tokens"], log["completion_tokens"], log["cached_tokens"]) == (7000, 500, 2000)
    assert _usd(log["cost_usd"]) == Decimal(cost) and log["uncollected_usd"] == 0
    assert log["token_count_method"] == "reported"
    assert (None if log["charged_usd"] is None else _usd(log["charged_usd"])) == (Decimal(charge) if end_user else None)


def test_chat_platform_key_cost_is_the_wallet_row(stack: Stack, gateway: GatewayServer) -> None:
    with _client(gateway, stack.tenant.platform_key) as client:
        raw = client.chat.completions.with_raw_response.create(model="cache", messages=USER)
    completion = raw.parse()
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 2000
    cost = completion.usage.model_extra["cost"] if completion.usage.model_extra else None
    assert f'"cost":{expected(stack.row)[0]}' in raw.http_response.text  # §9.1 number: no exponent, no float noise
    log, taken = _settled(stack, raw.headers["x-request-id"], end_user=False)
    _check_log(stack, log, end_user=False)
    assert _usd(cost) == taken == Decimal(expected(stack.row)[0])


def test_chat_stream_end_user_cost_is_the_budget_row(stack: Stack, gateway: GatewayServer) -> None:
    with (
        _client(gateway, stack.end_user_key) as client,
        client.chat.completions.with_streaming_response.create(
            model="cache", messages=USER, stream=True, stream_options={"include_usage": True}
        ) as response,
    ):
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    cost = (final.usage.model_extra or {})["cost"]
    log, taken = _settled(stack, request_id, end_user=True)
    _check_log(stack, log, end_user=True)
    assert _usd(cost) == taken == Decimal(expected(stack.row)[1])


def test_responses_cost_equals_the_ledger(stack: Stack, gateway: GatewayServer) -> None:
    with _client(gateway, stack.end_user_key) as client:
        raw = client.responses.with_raw_response.create(model="cache", input="Hello, Tollway!")
        response = raw.parse()
        assert response.usage is not None and response.usage.input_tokens_details.cached_tokens == 2000
        log, taken = _settled(stack, raw.headers["x-request-id"], end_user=True)
        _check_log(stack, log, end_user=True)
        assert _usd((response.usage.model_extra or {})["cost"]) == taken == Decimal(expected(stack.row)[1])
        stored = client.responses.retrieve(response.id)
        assert stored.usage is not None and "cost" not in (stored.usage.model_extra or {})  # told once, when charged

        with client.responses.with_streaming_response.create(
            model="cache", input="Hello, Tollway!", stream=True
        ) as streamed:
            request_id = streamed.headers["x-request-id"]
            events = list(streamed.parse())
    completed = events[-1]
    assert completed.type == "response.completed" and completed.response.usage is not None
    log, taken = _settled(stack, request_id, end_user=True)
    _check_log(stack, log, end_user=True)
    assert _usd((completed.response.usage.model_extra or {})["cost"]) == taken == Decimal(expected(stack.row)[1])
    assert_invariants(gateway.settings)


def test_cost_is_the_charge_even_when_the_budget_captures_less(
    admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> None:
    """SPEC §9.4: a charge above what the budget has left is captured as far as it goes. ``usage.cost`` is the
    call's price (§9.2), known when the answer is written; the budget row records what could be captured."""
    provider = create_provider(admin, fake_upstream.dialect_base_url("openai"), kind="openai")
    create_model(admin, provider["id"], "cache", CACHE_MODEL, **PRICES)
    tenant = create_tenant(admin, gateway.url, provider["id"], provider["slug"])
    patched = tenant.client.patch(
        f"/v1/platforms/{tenant.platform_id}", json={"settings": {"markup_percentage": MARKUP_PERCENT}}
    )
    assert patched.status_code == 200, patched.text
    user = _end_user(tenant, budget_usd="0.025")  # the hold fits (about $0.0173), the $0.026565 charge does not
    time.sleep(1.0)  # platform settings apply to requests admitted ≥ 1 s later
    with _client(gateway, user["api_key"]["raw_key"]) as client:
        raw = client.chat.completions.with_raw_response.create(model="cache", messages=USER)
    usage = raw.parse().usage
    assert usage is not None
    request_id = raw.headers["x-request-id"]
    (log,) = logs_for(tenant, request_id)
    (budget,) = _budget_rows(tenant, user["id"], request_id)
    assert _usd((usage.model_extra or {})["cost"]) == Decimal("0.026565")
    assert _usd(budget["amount_usd"]) == Decimal("-0.025") and _usd(log["charged_usd"]) == Decimal("0.025")
    assert _usd(log["cost_usd"]) == Decimal("0.0231") and log["uncollected_usd"] == 0  # the wallet paid in full
    assert_invariants(gateway.settings)
    tenant.client.close()
