"""The webhook dispatcher (SPEC §11.3, §11.4, §13.3): every instance polls for due deliveries, claims them under row
locks, POSTs the signed envelope and records the attempt, then schedules the next one or gives up.

The clock and the jitter are injectable so that tests can drive the retry schedule. The HTTP session refuses, at
connection time, any address that is not public (§11.5), unless private URLs are allowed; redirects are never
followed. Delivery runs off the request path: a request only commits outbox rows.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

import aiohttp

from tollway.domain.clock import as_utc, rfc3339, utcnow
from tollway.domain.deliveries import DeliveryJob
from tollway.domain.ports.operations import DeliveryQueue
from tollway.domain.sealing import Sealer, SealError
from tollway.domain.webhooks import (
    ATTEMPT_TIMEOUT_S,
    EXCERPT_BYTES,
    DeliveryStatus,
    next_attempt_delay,
    signature_header,
)
from tollway.observability.metrics import Metrics
from tollway.providers.public_http import PublicOnlyConnector
from tollway.providers.transport import redact
from tollway.services.management.webhooks import secret_context

log = logging.getLogger("tollway.webhooks")

POLL_S: Final = 0.5
LEASE: Final = timedelta(seconds=60)  # > the 15 s attempt timeout: a crashed instance's claim comes due again
BATCH: Final = 32
GAUGE_EVERY_S: Final = 10.0


def webhook_session(allow_private: bool) -> aiohttp.ClientSession:
    """The dispatcher's own session: 15 s per attempt, no proxies from the environment, no cookies."""
    connector: aiohttp.TCPConnector = (
        aiohttp.TCPConnector(limit=64) if allow_private else PublicOnlyConnector(limit=64, use_dns_cache=False)
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_S),
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent",),
    )


class WebhookDispatcher:
    def __init__(
        self,
        store: DeliveryQueue,
        sealer: Sealer,
        session: aiohttp.ClientSession,
        delays_s: Sequence[float],
        *,
        clock: Callable[[], datetime] = utcnow,
        jitter: Callable[[], float] = random.random,
        metrics: Metrics | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._session = session
        self._delays = tuple(delays_s)
        self._clock = clock
        self._jitter = jitter
        self._metrics = metrics
        self._poll_s = poll_s

    async def run(self) -> None:
        """Forever: attempt what is due, sleep ``poll_s`` when nothing was; failures are logged, never fatal."""
        gauge_at = 0.0
        while True:
            done = 0
            try:
                done = await self.run_once()
                if self._metrics is not None and time.monotonic() >= gauge_at:
                    self._metrics.set_outbox_pending(await self._store.pending_count())
                    gauge_at = time.monotonic() + GAUGE_EVERY_S
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook dispatch failed; retrying")
            if not done:
                await asyncio.sleep(self._poll_s)

    async def run_once(self) -> int:
        """Claims the due deliveries and attempts them concurrently; returns how many were attempted."""
        jobs = await self._store.claim_due(self._clock(), LEASE, BATCH)
        if jobs:
            await asyncio.gather(*(self._attempt(job) for job in jobs))
        return len(jobs)

    def _secrets(self, job: DeliveryJob, now: datetime) -> list[str]:
        context = secret_context(job.platform_id, job.endpoint_id)
        secrets = [self._sealer.open(job.secret_sealed, context)]
        expires = job.previous_secret_expires_at
        if job.previous_secret_sealed is not None and expires is not None and as_utc(expires) > now:
            secrets.append(self._sealer.open(job.previous_secret_sealed, context))
        return secrets

    async def _post(self, job: DeliveryJob, now: datetime) -> tuple[int | None, str | None, str | None]:
        """``(status, body excerpt, error)`` of one POST; never raises for network trouble."""
        timestamp = int(now.timestamp())
        try:
            signature = signature_header(self._secrets(job, now), job.webhook_id, timestamp, job.body)
        except SealError:
            return None, None, "the endpoint secret could not be opened"
        headers = {
            "content-type": "application/json",
            "webhook-id": job.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
        try:
            async with self._session.post(job.url, data=job.body, headers=headers, allow_redirects=False) as resp:
                raw = await resp.content.read(EXCERPT_BYTES)
                return resp.status, excerpt_of(raw), None
        except TimeoutError:
            return None, None, f"timed out after {ATTEMPT_TIMEOUT_S:g} s"
        except aiohttp.ClientConnectorError as exc:
            return None, None, redact(f"connection failed: {exc.os_error}"[:300], None)
        except aiohttp.ClientError as exc:
            return None, None, redact(f"connection failed: {exc}"[:300], None)

    async def _attempt(self, job: DeliveryJob) -> None:
        now = self._clock()
        started = time.monotonic()
        status, excerpt, error = await self._post(job, now)
        number = len(job.attempts) + 1
        attempt = {
            "attempt": number,
            "attempted_at": rfc3339(now),
            "response_status": status,
            "response_body_excerpt": excerpt,
            "duration_ms": int((time.monotonic() - started) * 1000),
            "error": error,
        }
        attempts = [*job.attempts, attempt]
        if status is not None and 200 <= status < 300:
            await self._store.record_attempt(job.id, attempts, DeliveryStatus.SUCCEEDED, None, now)
            self._count("succeeded")
            return
        if status == 410:
            await self._store.record_attempt(job.id, attempts, DeliveryStatus.FAILED, None, now)
            await self._store.disable_gone(job.endpoint_id, now)
            self._count("gone")
            return
        delay = next_attempt_delay(self._delays, number, self._jitter())
        if delay is None:
            await self._store.record_attempt(job.id, attempts, DeliveryStatus.FAILED, None, now)
        else:
            await self._store.record_attempt(job.id, attempts, DeliveryStatus.PENDING, now + delay, now)
        self._count("failed")

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.webhook_delivery(outcome)


def excerpt_of(raw: bytes) -> str:
    """At most 1 KiB of UTF-8, scrubbed of anything key-shaped (§11.4, §15)."""
    text = redact(raw[:EXCERPT_BYTES].decode("utf-8", errors="replace"), None)
    return text.encode("utf-8")[:EXCERPT_BYTES].decode("utf-8", errors="ignore")
