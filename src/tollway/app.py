"""The composition root: ``create_app(settings)`` builds the ASGI app and wires every concrete class in lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.ports.payments import PaymentGateway
from tollway.domain.ports.ratelimit import RateLimitBackend
from tollway.domain.sealing import Sealer
from tollway.errors import InternalError, NotFound, TollwayError
from tollway.http import fastpath
from tollway.http.cors import InferenceCORS
from tollway.http.drain import Drain
from tollway.http.mcp.proxy import McpProxy
from tollway.http.middleware import RequestContextMiddleware, route_templates
from tollway.http.responses import error_response
from tollway.http.routes import HOT_PATHS, HOT_PREFIXED_PATHS, build_routes
from tollway.observability.metrics import Metrics
from tollway.payments.stripe_checkout import StripeCheckout
from tollway.providers.mcp.client import SdkMcpClient
from tollway.providers.oauth import AuthlibOAuthClient
from tollway.providers.price_catalog import HttpCatalogSource
from tollway.providers.registry import AdapterRegistry
from tollway.services.agents.agent_loop import AgentLoop
from tollway.services.agents.mcp_calls import McpCalls
from tollway.services.agents.mcp_connections import McpConnections
from tollway.services.agents.mcp_free_tier import FreeTierGate
from tollway.services.agents.threads import Threads
from tollway.services.auth import Authenticator
from tollway.services.bootstrap import ensure_operator_key, load_sealer, operator_digest_source
from tollway.services.console import Console
from tollway.services.console.sessions import ConsoleSessions
from tollway.services.console.spend import SpendReports
from tollway.services.container import Services
from tollway.services.inference.breaker import DeploymentHealth
from tollway.services.inference.call import CallLifecycle
from tollway.services.inference.chat import ChatCompletions
from tollway.services.inference.embeddings import EmbeddingsService
from tollway.services.inference.images import ImagesService
from tollway.services.inference.models import ModelCatalogView
from tollway.services.inference.moderations import ModerationsService
from tollway.services.inference.responses import ResponsesService
from tollway.services.inference.routing import CandidateRouter
from tollway.services.management import Management
from tollway.services.management.accounts import Accounts
from tollway.services.management.budgets import Budgets
from tollway.services.management.card_topups import CardTopups, ReturnUrls
from tollway.services.management.catalog_admin import CatalogAdmin
from tollway.services.management.credentials import LlmConfigs, PlatformKeys
from tollway.services.management.end_users import EndUsers
from tollway.services.management.idempotency import Idempotency
from tollway.services.management.mcp_apps import McpApps
from tollway.services.management.platforms import Platforms
from tollway.services.management.price_import import PriceImport
from tollway.services.management.rate_overrides import RateLimitOverrides
from tollway.services.management.webhooks import Webhooks
from tollway.services.operations import Operations
from tollway.services.ratelimit import FailoverBackend, LimitCache, RateLimiter
from tollway.settings import Settings, redis_endpoint
from tollway.storage.money.writer import MoneyWriter
from tollway.storage.ratelimit.memory import InProcessRateLimitBackend
from tollway.storage.ratelimit.redis import RedisRateLimitBackend
from tollway.storage.sql.api_keys import ApiKeyStore
from tollway.storage.sql.budgets import BudgetStore, reset_due_budgets
from tollway.storage.sql.catalog import CatalogStore
from tollway.storage.sql.catalog_admin import CatalogAdminStore
from tollway.storage.sql.console import SqlConsoleSessions, SqlUsageAggregates
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.end_users import EndUserStore
from tollway.storage.sql.health import DatabaseHealth
from tollway.storage.sql.holds import ExpiredHoldStore
from tollway.storage.sql.idempotency import IdempotencyStore, prune_idempotency
from tollway.storage.sql.instances import InstanceStore
from tollway.storage.sql.keystore import KeyStore
from tollway.storage.sql.ledger import LedgerStore
from tollway.storage.sql.llm_configs import LlmConfigStore
from tollway.storage.sql.mcp import McpAppStore, McpConnectionStore, prune_oauth_states
from tollway.storage.sql.mcp_free_calls import McpFreeCallStore
from tollway.storage.sql.rate_overrides import RateOverrideStore
from tollway.storage.sql.reconcile import MoneyAuditStore
from tollway.storage.sql.responses import ResponseStore, prune_responses
from tollway.storage.sql.tenants import PlatformStore
from tollway.storage.sql.threads import ThreadStore, prune_threads
from tollway.storage.sql.unit_of_work import SqlUnitOfWork
from tollway.storage.sql.webhooks import WebhookStore
from tollway.workers.heartbeat import Presence
from tollway.workers.periodic import every
from tollway.workers.sweeper import HoldSweeper
from tollway.workers.webhooks import WebhookDispatcher, webhook_session

log = logging.getLogger("tollway")
STRIPE_TIMEOUT_S = 30.0  # per attempt of a Checkout Session creation; the stripe library retries twice


@dataclass
class Runtime:
    """What the process owns and closes at shutdown; only this module sees it. Handlers get ``services``."""

    settings: Settings
    engine: AsyncEngine
    sealer: Sealer
    keys: KeyStore
    money: MoneyWriter
    rate_limiter: RateLimiter
    http: aiohttp.ClientSession
    services: Services
    oauth_http: aiohttp.ClientSession  # to MCP apps' authorization servers, public addresses only (§11.5)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    payments: PaymentGateway | None = None  # Stripe, when card top-ups are configured (SPEC §17.2)
    mcp_client: SdkMcpClient | None = None  # its connection pool to MCP apps (SPEC §16.3)


async def _not_found(_request: Request, _exc: Exception) -> Response:
    return error_response(NotFound("Unknown route."))


async def _tollway_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TollwayError)
    return error_response(exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc, extra={"request_id": request.scope.get("state", {}).get("request_id")})
    return error_response(InternalError())


async def _http_exception(_request: Request, exc: Exception) -> Response:
    # 405 included: a route exists only as method and path (SPEC §2.3 step 1).
    assert isinstance(exc, HTTPException)
    return error_response(NotFound("Unknown route."))


def _upstream_session(settings: Settings) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(
        total=settings.total_timeout_s, sock_connect=settings.connect_timeout_s, sock_read=settings.idle_timeout_s
    )
    # No cookie jar: one session serves every tenant, so a cookie a provider sets must never travel on another call.
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def _touch_keys_loop(authenticator: Authenticator, keys: KeyStore) -> None:
    """Writes ``last_used_at`` off the hot path, at most once per minute per key."""
    while True:
        await asyncio.sleep(5)
        pending = list(authenticator.pending_touches)
        authenticator.pending_touches.clear()
        for key_id in pending:
            try:
                await keys.touch(key_id)
            except Exception:  # a lost touch is harmless; never let the loop die
                log.warning("could not update last_used_at", exc_info=True)


async def build_runtime(settings: Settings, metrics: Metrics) -> Runtime:
    """Every store, service and worker dependency of the process, built once."""
    engine = create_engine(settings)
    keys = KeyStore(engine)
    await ensure_operator_key(settings, keys)
    sealer = await load_sealer(settings, keys)
    digest_source: Callable[[], Awaitable[bytes | None]] = operator_digest_source(settings, keys)
    authenticator = Authenticator(keys, digest_source, settings.auth_failure_limit)
    router = CandidateRouter(CatalogStore(engine), sealer)
    money = MoneyWriter(settings, engine)
    overrides = RateOverrideStore(engine)
    limiter = _rate_limiter(settings, overrides, metrics)
    http = _upstream_session(settings)
    adapters = AdapterRegistry(http, settings)
    calls = CallLifecycle(settings, router, money, limiter, metrics)
    health = DeploymentHealth()  # per process, shared by chat and Responses: the same rows, the same breakers
    chat = ChatCompletions(calls, adapters, health)
    store = ResponseStore(engine, settings.response_retention_days)
    threads = Threads(ThreadStore(engine, settings.response_retention_days), settings.thread_lease_s)
    responses = ResponsesService(calls, adapters, health, store, threads)
    images = ImagesService(calls, adapters)
    operations = Operations(DatabaseHealth(engine, settings), limiter, MoneyAuditStore(engine), metrics)
    oauth_http = webhook_session(settings.allow_private_urls)  # 15 s per request, guarded connector, no redirects
    mcp_connections = McpConnections(
        McpAppStore(engine),
        McpConnectionStore(engine),
        PlatformStore(engine),
        AuthlibOAuthClient(oauth_http),
        sealer,
        public_url=settings.public_base_url,
    )
    payments = _payments(settings)
    mcp_client = SdkMcpClient(
        call_timeout_s=settings.mcp_call_timeout_s,
        max_result_bytes=settings.mcp_max_result_bytes,
        allow_private=settings.allow_private_urls,
    )
    mcp_calls = McpCalls(calls, mcp_connections, mcp_client, FreeTierGate(McpFreeCallStore(engine)))
    responses.agents = AgentLoop(responses, mcp_calls, calls)  # `mcp` tools of /v1/responses (SPEC §16.3)

    def invalidate_caches() -> None:
        authenticator.invalidate()
        router.invalidate()
        limiter.invalidate()
        mcp_connections.invalidate()

    services = Services(
        settings=settings,
        metrics=metrics,
        authenticator=authenticator,
        chat=chat,
        responses=responses,
        threads=threads,
        images=images,
        embeddings=EmbeddingsService(calls, adapters),
        moderations=ModerationsService(calls, adapters),
        models=ModelCatalogView(router, adapters),
        management=_management(settings, engine, sealer, overrides, payments),
        invalidate_caches=invalidate_caches,
        operations=operations,
        mcp_connections=mcp_connections,
        mcp_calls=mcp_calls,
        console=Console(
            ConsoleSessions(SqlConsoleSessions(engine), authenticator, sealer), SpendReports(SqlUsageAggregates(engine))
        ),
    )
    return Runtime(
        settings,
        engine,
        sealer,
        keys,
        money,
        limiter,
        http,
        services,
        oauth_http,
        payments=payments,
        mcp_client=mcp_client,
    )


def _payments(settings: Settings) -> PaymentGateway | None:
    """Stripe Checkout when both of its secrets are set (SPEC §17.2); card top-ups are off otherwise."""
    if not (settings.stripe_secret_key and settings.stripe_webhook_secret):
        return None
    return StripeCheckout(
        settings.stripe_secret_key,
        settings.stripe_webhook_secret,
        api_base=settings.stripe_api_base,
        timeout_s=min(settings.total_timeout_s, STRIPE_TIMEOUT_S),
    )


def _management(
    settings: Settings,
    engine: AsyncEngine,
    sealer: Sealer,
    overrides: RateOverrideStore,
    payments: PaymentGateway | None,
) -> Management:
    """The management use cases over their SQL repositories; the unit of work is one transaction per operation."""

    def unit_of_work() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine)

    return Management(
        catalog=CatalogAdmin(CatalogAdminStore(engine)),
        platforms=Platforms(PlatformStore(engine)),
        platform_keys=PlatformKeys(ApiKeyStore(engine)),
        llm_configs=LlmConfigs(LlmConfigStore(engine), sealer),
        accounts=Accounts(LedgerStore(engine)),
        end_users=EndUsers(EndUserStore(engine)),
        budgets=Budgets(BudgetStore(engine), unit_of_work),
        idempotency=Idempotency(IdempotencyStore(engine), unit_of_work),
        webhooks=Webhooks(WebhookStore(engine), sealer, allow_private=settings.allow_private_urls),
        rate_limits=RateLimitOverrides(overrides),
        mcp_apps=McpApps(McpAppStore(engine), sealer, allow_private=settings.allow_private_urls),
        prices=PriceImport(CatalogAdminStore(engine), HttpCatalogSource(settings.allow_private_urls)),
        card_topups=CardTopups(payments, unit_of_work, ReturnUrls.under(settings.public_base_url)),
    )


def _rate_limiter(settings: Settings, overrides: RateOverrideStore, metrics: Metrics) -> RateLimiter:
    """In-process limits in embedded mode; Redis (with a local fallback share when it is down) for scale-out."""
    backend: RateLimitBackend = InProcessRateLimitBackend()
    if settings.redis_url:
        redis = RedisRateLimitBackend(
            redis_endpoint(settings.redis_url), busy_poll_s=settings.redis_busy_poll_us / 1_000_000
        )
        backend = FailoverBackend(redis, InProcessRateLimitBackend(), settings.expected_instances, metrics=metrics)
    return RateLimiter(backend, LimitCache(overrides), metrics)


def create_app(settings: Settings, metrics: Metrics | None = None) -> Any:
    """``metrics``: the CLI passes a multiprocess-mode ``Metrics`` to the workers of ``serve --workers N``."""
    metrics = metrics or Metrics()
    drain = Drain(settings.drain_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = await build_runtime(settings, metrics)
        services = runtime.services
        app.state.services = services
        mcp_proxy = McpProxy(services.mcp_calls, settings.max_body_bytes)  # the SDK server of /v1/mcp/{slug}
        app.state.mcp_proxy = mcp_proxy
        proxy_running = contextlib.AsyncExitStack()
        await proxy_running.enter_async_context(mcp_proxy.running())
        app.state.drain = drain
        drain.install_signal_hook()  # SIGTERM: /readyz 503, streams ended after drain_s (SPEC §14.3)
        runtime.money.start()
        presence = Presence(
            InstanceStore(runtime.engine),
            uses_redis=settings.redis_url is not None,
            instance_id=runtime.money.instance_id,
        )
        await presence.start()
        runtime.background.append(asyncio.create_task(presence.run()))
        runtime.background.append(asyncio.create_task(_touch_keys_loop(services.authenticator, runtime.keys)))
        engine = runtime.engine
        hooks = webhook_session(settings.allow_private_urls)  # its own guarded connector (SPEC §11.5)
        dispatcher = WebhookDispatcher(
            WebhookStore(engine), runtime.sealer, hooks, settings.webhook_retry_delays, metrics=metrics
        )
        runtime.background += [
            asyncio.create_task(dispatcher.run()),
            asyncio.create_task(HoldSweeper(ExpiredHoldStore(engine), runtime.money, metrics=metrics).run()),
            asyncio.create_task(every(60, "budget period resets", lambda now: reset_due_budgets(engine, now))),
            asyncio.create_task(every(3600, "idempotency pruning", lambda now: prune_idempotency(engine, now))),
            asyncio.create_task(every(3600, "stored response pruning", lambda now: prune_responses(engine, now))),
            asyncio.create_task(
                every(3600, "thread pruning", lambda now: prune_threads(engine, now, settings.response_retention_days))
            ),
            asyncio.create_task(every(3600, "MCP OAuth state pruning", lambda now: prune_oauth_states(engine, now))),
            asyncio.create_task(every(3600, "console session pruning", services.console.sessions.prune)),
        ]
        try:
            yield
        finally:
            drain.remove_signal_hook()
            await proxy_running.aclose()
            services.responses.threads.close()
            for task in runtime.background:
                task.cancel()
            await presence.leave()
            await runtime.money.stop()
            await services.authenticator.close()  # no gathered key refresh left to run on a disposed engine
            await runtime.rate_limiter.close()
            await runtime.http.close()
            await runtime.oauth_http.close()
            if runtime.mcp_client is not None:
                await runtime.mcp_client.aclose()
            await hooks.close()
            if runtime.payments is not None:
                await runtime.payments.close()
            await runtime.engine.dispose()
            metrics.process_exited()

    routes = build_routes(console=settings.console)
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: _http_exception,
            404: _not_found,
            TollwayError: _tollway_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    # A trailing slash is another, unknown path (404), never a 307 whose Location comes from Host (SPEC §15).
    app.router.redirect_slashes = False
    served: Any = fastpath.wrap(app, routes, HOT_PATHS, HOT_PREFIXED_PATHS)
    if settings.cors_origin_list:
        served = InferenceCORS(served, settings.cors_origin_list)
    return RequestContextMiddleware(
        served, metrics, route_templates(routes), drain, trusted_proxies=settings.trusted_proxy_networks
    )
