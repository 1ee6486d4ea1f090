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
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.sealing import Sealer
from tollway.errors import InternalError, NotFound, TollwayError
from tollway.http.cors import InferenceCORS
from tollway.http.middleware import RequestContextMiddleware
from tollway.http.responses import error_response
from tollway.http.routes import build_routes
from tollway.providers.registry import AdapterRegistry
from tollway.services.auth import Authenticator
from tollway.services.billing import Billing
from tollway.services.bootstrap import ensure_operator_key, load_sealer, operator_digest_source
from tollway.services.inference import InferenceService
from tollway.services.ratelimit import FailoverBackend, LimitCache, RateLimitBackend, RateLimiter
from tollway.services.routing import CandidateRouter
from tollway.settings import Settings
from tollway.storage.budgets import reset_due_budgets
from tollway.storage.catalog import CatalogStore
from tollway.storage.db import create_engine
from tollway.storage.idempotency import prune_idempotency
from tollway.storage.keystore import KeyStore
from tollway.storage.money_writer import MoneyWriter
from tollway.storage.rate_overrides import RateOverrideStore
from tollway.storage.ratelimit_memory import InProcessRateLimitBackend
from tollway.storage.ratelimit_redis import RedisRateLimitBackend
from tollway.storage.ratelimit_redis import connect as connect_redis
from tollway.workers.heartbeat import Presence
from tollway.workers.periodic import every
from tollway.workers.sweeper import HoldSweeper

log = logging.getLogger("tollway")


@dataclass
class Services:
    """Everything the HTTP layer may call, built once per process."""

    settings: Settings
    engine: AsyncEngine
    keys: KeyStore
    sealer: Sealer
    authenticator: Authenticator
    router: CandidateRouter
    money: MoneyWriter
    rate_limiter: RateLimiter
    inference: InferenceService
    http: aiohttp.ClientSession
    background: list[asyncio.Task[None]] = field(default_factory=list)

    def invalidate_caches(self) -> None:
        """Called after this instance changes keys, configs, providers or models."""
        self.authenticator.invalidate()
        self.router.invalidate()
        self.rate_limiter.invalidate()


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
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=True, skip_auto_headers=("User-Agent",)
    )


async def _touch_keys_loop(services: Services) -> None:
    """Writes ``last_used_at`` off the hot path, at most once per minute per key."""
    while True:
        await asyncio.sleep(5)
        pending = list(services.authenticator.pending_touches)
        services.authenticator.pending_touches.clear()
        for key_id in pending:
            try:
                await services.keys.touch(key_id)
            except Exception:  # a lost touch is harmless; never let the loop die
                log.warning("could not update last_used_at", exc_info=True)


async def build_services(settings: Settings) -> Services:
    engine = create_engine(settings)
    keys = KeyStore(engine)
    await ensure_operator_key(settings, keys)
    sealer = await load_sealer(settings, keys)
    digest_source: Callable[[], Awaitable[bytes | None]] = operator_digest_source(settings, keys)
    authenticator = Authenticator(keys, digest_source, settings.auth_failure_limit)
    router = CandidateRouter(CatalogStore(engine), sealer)
    money = MoneyWriter(settings, engine)
    limiter = _rate_limiter(settings, engine)
    http = _upstream_session(settings)
    billing = Billing(settings, money)
    inference = InferenceService(settings, router, billing, limiter, AdapterRegistry(http, settings))
    return Services(settings, engine, keys, sealer, authenticator, router, money, limiter, inference, http)


def _rate_limiter(settings: Settings, engine: AsyncEngine) -> RateLimiter:
    """In-process limits in embedded mode; Redis (with a local fallback share when it is down) for scale-out."""
    backend: RateLimitBackend = InProcessRateLimitBackend()
    if settings.redis_url:
        redis = RedisRateLimitBackend(connect_redis(settings.redis_url))
        backend = FailoverBackend(redis, InProcessRateLimitBackend(), settings.expected_instances)
    return RateLimiter(backend, LimitCache(RateOverrideStore(engine)))


def create_app(settings: Settings) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await build_services(settings)
        app.state.services = services
        services.money.start()
        presence = Presence(services.engine, uses_redis=settings.redis_url is not None)
        await presence.start()
        services.background.append(asyncio.create_task(presence.run()))
        services.background.append(asyncio.create_task(_touch_keys_loop(services)))
        engine = services.engine
        services.background += [
            asyncio.create_task(HoldSweeper(engine, services.money).run()),
            asyncio.create_task(every(60, "budget period resets", lambda now: reset_due_budgets(engine, now))),
            asyncio.create_task(every(3600, "idempotency pruning", lambda now: prune_idempotency(engine, now))),
        ]
        try:
            yield
        finally:
            for task in services.background:
                task.cancel()
            await presence.leave()
            await services.money.stop()
            await services.rate_limiter.close()
            await services.http.close()
            await services.engine.dispose()

    middleware = []
    if settings.cors_origin_list:
        middleware.append(Middleware(InferenceCORS, origins=settings.cors_origin_list))
    app = Starlette(
        routes=build_routes(),
        middleware=middleware,
        exception_handlers={
            HTTPException: _http_exception,
            404: _not_found,
            TollwayError: _tollway_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    return RequestContextMiddleware(app)
