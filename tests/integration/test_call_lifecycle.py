"""The one paid-call lifecycle (services/inference/call.py) is generic: a new kind of paid call supplies only its
tariff and its upstream step. A made-up kind, a tool call at a flat $0.002 per call, runs here against the real
money writer and database of a served gateway: charged exactly once when it succeeds, released with one zero-cost
log row when every attempt fails, refused before any attempt when the wallet cannot cover it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.invariants import assert_invariants
from tests.support.seed import create_model, create_provider, create_tenant
from tests.support.servers import GatewayServer
from tollway.domain.catalog import Candidate
from tollway.domain.holds import CandidateTerms, image_terms
from tollway.domain.keys import KeyKind
from tollway.domain.pricing import Usage, image_charge_nanos
from tollway.domain.ratelimit import TokenDemand
from tollway.domain.tariffs import Metered
from tollway.domain.tenancy import Principal
from tollway.domain.usage import CallStatus
from tollway.errors import UpstreamError, WalletInsufficient
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.services.bootstrap import load_sealer
from tollway.services.inference.breaker import DeploymentHealth
from tollway.services.inference.call import CallContext, CallLifecycle, Outcome, Plan
from tollway.services.inference.routing import CandidateRouter
from tollway.services.ratelimit import LimitCache, RateLimiter
from tollway.storage.money.writer import MoneyWriter
from tollway.storage.ratelimit.memory import InProcessRateLimitBackend
from tollway.storage.sql.catalog import CatalogStore
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.keystore import KeyStore
from tollway.storage.sql.rate_overrides import RateOverrideStore

PER_CALL_NANOS = 2_000_000  # $0.002
NO_TOKENS = TokenDemand(prompt_tokens=0, n=1, output_limit=0)


class FlatTariff:
    """The whole of a new kind's pricing: a fixed price per call, whatever the row's token prices."""

    def terms(self, candidate: Candidate, output_limit: int, prompt_bound: int) -> CandidateTerms:
        return image_terms(candidate.model.id, candidate.model.prices, PER_CALL_NANOS)

    def recovery(self, candidate: Candidate) -> dict[str, Any]:
        return {"input": 0, "output": 0, "cached": None, "provider_id": candidate.provider.id}

    def price(self, candidate: Candidate, metered: Metered, markup_bps: int) -> tuple[int, int]:
        cost = metered.units * PER_CALL_NANOS
        return cost, image_charge_nanos(cost, markup_bps)


@pytest.fixture
async def lifecycle(gateway: GatewayServer) -> AsyncIterator[CallLifecycle]:
    """The lifecycle wired as app.py wires it, on the gateway's own database."""
    settings = gateway.settings
    engine = create_engine(settings)
    money = MoneyWriter(settings, engine)
    money.start()
    router = CandidateRouter(CatalogStore(engine), await load_sealer(settings, KeyStore(engine)))
    limiter = RateLimiter(InProcessRateLimitBackend(), LimitCache(RateOverrideStore(engine)))
    try:
        yield CallLifecycle(settings, router, money, limiter)
    finally:
        await money.stop()
        await limiter.close()
        await engine.dispose()


def _read_wallet(client: httpx.Client, platform_id: str) -> int:
    body = client.get(f"/v1/platforms/{platform_id}/wallet").json()
    return round(float(body["balance_usd"]) * 1e9)


def _read_logs(client: httpx.Client, platform_id: str, request_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        rows = client.get(f"/v1/platforms/{platform_id}/logs", params={"limit": 100}).json()["data"]
        found = [r for r in rows if r["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


# Read in a thread: the lifecycle's money writer commits on this test's event loop.
async def _wallet_nanos(client: httpx.Client, platform_id: str) -> int:
    return await asyncio.to_thread(_read_wallet, client, platform_id)


async def _logs(client: httpx.Client, platform_id: str, request_id: str) -> list[dict[str, Any]]:
    return await asyncio.to_thread(_read_logs, client, platform_id, request_id)


async def _plan(lifecycle: CallLifecycle, ctx: CallContext, slug: str) -> Plan:
    candidates = list((await lifecycle.catalog(ctx)).candidates(slug))
    return Plan(slug, candidates, {c.model.id: 0 for c in candidates}, 0, markup_bps=0)


def _context(platform_id: str) -> CallContext:
    principal = Principal(KeyKind.PLATFORM, None, platform_id)
    return CallContext(principal, f"req_{uuid.uuid4().hex}", None, time.perf_counter(), "tool.call")


async def test_a_new_kind_of_paid_call_needs_only_its_tariff_and_its_step(
    admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread, lifecycle: CallLifecycle
) -> None:
    provider = create_provider(admin, fake_upstream.base_url)
    slug = f"tool-{uuid.uuid4().hex[:6]}"
    create_model(admin, provider["id"], slug, "fake/echo")
    tenant = create_tenant(admin, gateway.url, provider["id"], provider["slug"], topup="0.005")
    platform_id, client = tenant.platform_id, tenant.client
    before = await _wallet_nanos(client, platform_id)

    # Success: one hold, one attempt, one settlement at the flat price.
    ctx = _context(platform_id)
    call = await lifecycle.open(ctx, await _plan(lifecycle, ctx, slug), FlatTariff(), NO_TOKENS, DeploymentHealth())
    steps: list[str] = []

    async def tool_step(candidate: Candidate) -> str:
        steps.append(candidate.model.slug)
        return "42"

    with call:
        candidate, answer = await call.attempt(tool_step)
        await call.confirm()
    call.settle(candidate, Metered(Usage(0, 0), units=1), Outcome(CallStatus.SUCCESS))
    assert answer == "42" and steps == [slug]
    [row] = await _logs(client, platform_id, ctx.request_id)
    assert (row["request_type"], row["status"], row["cost_usd"]) == ("tool.call", "success", 0.002)
    assert await _wallet_nanos(client, platform_id) == before - PER_CALL_NANOS

    # Every attempt fails: the hold is released and the failure logged once at zero cost; nothing is charged.
    ctx = _context(platform_id)
    call = await lifecycle.open(ctx, await _plan(lifecycle, ctx, slug), FlatTariff(), NO_TOKENS, DeploymentHealth())

    async def broken_step(candidate: Candidate) -> str:
        raise UpstreamError("the tool server answered 401", upstream_status=401)

    with pytest.raises(UpstreamError), call:
        await call.attempt(broken_step)
    [row] = await _logs(client, platform_id, ctx.request_id)
    assert (row["status"], row["error_code"], row["cost_usd"]) == ("error", "upstream_error", 0.0)
    assert await _wallet_nanos(client, platform_id) == before - PER_CALL_NANOS

    # $0.003 left: one more call fits, the next is refused before its step runs.
    ctx = _context(platform_id)
    call = await lifecycle.open(ctx, await _plan(lifecycle, ctx, slug), FlatTariff(), NO_TOKENS, DeploymentHealth())
    with call:
        candidate, _ = await call.attempt(tool_step)
        await call.confirm()
    call.settle(candidate, Metered(Usage(0, 0), units=1), Outcome(CallStatus.SUCCESS))
    ctx = _context(platform_id)
    plan = await _plan(lifecycle, ctx, slug)
    with pytest.raises(WalletInsufficient):
        await lifecycle.open(ctx, plan, FlatTariff(), NO_TOKENS, DeploymentHealth())
    assert steps == [slug, slug]
    assert await _logs(client, platform_id, ctx.request_id) == []
    assert await _wallet_nanos(client, platform_id) == before - 2 * PER_CALL_NANOS
    await asyncio.to_thread(assert_invariants, gateway.settings)
    client.close()
