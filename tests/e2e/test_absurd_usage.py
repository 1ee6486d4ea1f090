"""SPEC §9.4 through the real stack, for every provider kind: a provider reporting absurd token counts (above
2³¹ − 1, or a total above 10⁹) is not believed. The counts are estimated from what was delivered, the call costs what
those estimates cost (never the wallet's whole balance), and settlement never raises, streamed or not."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.providers_conftest import ROWS, Row
from tests.support.seed import Tenant, create_model, create_provider, create_tenant, logs_for
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

USER: Any = [{"role": "user", "content": "Hello, Tollway!"}]
ABSURD = {
    "quadrillion": "fake/echo?in=1000000000000000&out=5",  # each count above 2³¹ − 1
    "int64": "fake/echo?in=5&out=9223372036854775808",  # beyond a signed 64-bit integer
    "total": "fake/echo?in=600000000&out=600000000",  # each count sane, the total above 10⁹
}
PRICES = {"input_price_per_mtok": "3", "output_price_per_mtok": "15"}


@dataclass(frozen=True)
class Stack:
    row: Row
    tenant: Tenant


@pytest.fixture(scope="module", params=ROWS, ids=[r.id for r in ROWS])
def stack(
    request: pytest.FixtureRequest, admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> Iterator[Stack]:
    row: Row = request.param
    provider = create_provider(admin, fake_upstream.dialect_base_url(row.dialect), kind=row.kind)
    for slug, upstream in ABSURD.items():
        create_model(admin, provider["id"], slug, upstream, **PRICES)
    tenant = create_tenant(admin, gateway.url, provider["id"], provider["slug"])
    yield Stack(row, tenant)
    tenant.client.close()


def _balance(tenant: Tenant) -> Decimal:
    wallet = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet")
    assert wallet.status_code == 200, wallet.text
    return Decimal(str(wallet.json()["balance_usd"]))


def _expected_cost(log: dict[str, Any]) -> Decimal:
    """§9.2 at $3 / $15 per Mtok, rounded up to the nano-dollar once."""
    micro = Decimal(log["prompt_tokens"]) * 3 + Decimal(log["completion_tokens"]) * 15  # µ$ (tokens × $/Mtok)
    return (micro / Decimal(10**6)).quantize(Decimal("1e-9"), rounding="ROUND_CEILING")


@pytest.mark.parametrize("slug", sorted(ABSURD))
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_absurd_counts_are_estimated(stack: Stack, gateway: GatewayServer, slug: str, stream: bool) -> None:
    before = _balance(stack.tenant)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=stack.tenant.platform_key, max_retries=0, timeout=30)
    with client:
        if stream:
            with client.chat.completions.with_streaming_response.create(
                model=slug, messages=USER, stream=True, stream_options={"include_usage": True}
            ) as raw:
                request_id = raw.headers["x-request-id"]
                text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
        else:
            raw_json = client.chat.completions.with_raw_response.create(model=slug, messages=USER)
            request_id = raw_json.headers["x-request-id"]
            text = raw_json.parse().choices[0].message.content or ""
    assert "Hello, Tollway!" in text
    (log,) = logs_for(stack.tenant, request_id)
    assert log["status"] == "success", log
    assert log["token_count_method"] == "estimated"
    # ⌈T_p/4⌉ of a one-message prompt, ⌈D/4⌉ of the delivered text: small, never the reported counts.
    assert 0 < log["prompt_tokens"] < 100
    assert log["completion_tokens"] == -(-len(text.encode()) // 4)
    cost = Decimal(str(log["cost_usd"]))
    assert cost == _expected_cost(log) and Decimal(str(log["uncollected_usd"])) == 0
    assert _balance(stack.tenant) == before - cost
