"""Prometheus metrics (SPEC §13.4): one ``Metrics`` object per process, built in the composition root and passed to
the code that observes. Labels carry route templates, provider and model slugs, outcomes and dimensions only: never
keys, tenant ids or end-user ids.

Single process (tests, ``tollway serve``): a private registry, no environment needed. ``tollway serve --workers N``:
the CLI points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh per-run directory before the workers start; every worker
then writes its samples there and any worker's ``/metrics`` answers the sum over all of them. Two values are read
from the database at scrape time instead (``tollway_holds_active``, ``tollway_uncollected_nano_usd_total``): they
are facts about the shared store, the same whichever worker answers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client itself when it is imported
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class StoreGauges(Collector):
    """Values of the shared database, refreshed by the ``/metrics`` handler just before it renders."""

    def __init__(self) -> None:
        self.holds_active: int | None = None
        self.uncollected_nanos: int | None = None

    def collect(self) -> Iterator[Metric]:
        if self.holds_active is not None:
            yield GaugeMetricFamily("tollway_holds_active", "Active holds in the database.", value=self.holds_active)
        if self.uncollected_nanos is not None:
            yield CounterMetricFamily(
                "tollway_uncollected_nano_usd",
                "Raw provider cost the wallets could not cover, in nano-USD (SPEC 9.4).",
                value=self.uncollected_nanos,
            )


class Metrics:
    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self._registry = CollectorRegistry(auto_describe=False)
        r = self._registry
        self.requests = Counter(
            "tollway_requests", "HTTP requests by route template and status.", ["route", "status"], registry=r
        )
        self.upstream_requests = Counter(
            "tollway_upstream_requests",
            "Upstream attempts by provider slug, model slug and outcome (success, error, timeout).",
            ["provider", "model", "outcome"],
            registry=r,
        )
        self.added_latency = Histogram(
            "tollway_added_latency_seconds",
            "Time in the gateway until the response starts, minus time waiting on upstreams.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "tollway_upstream_latency_seconds",
            "Duration of one upstream attempt until its response (first event for streams).",
            ["provider"],
            buckets=_UPSTREAM_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "tollway_ttft_seconds",
            "Receipt to first content chunk sent, for streams.",
            ["model"],
            buckets=_UPSTREAM_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "tollway_tokens", "Billed tokens by model and direction.", ["model", "direction"], registry=r
        )
        self.cost = Counter("tollway_cost_nano_usd", "Raw provider cost in nano-USD by model.", ["model"], registry=r)
        self.holds_expired = Counter("tollway_holds_expired", "Expired holds resolved by the sweeper.", registry=r)
        self.ratelimit_rejections = Counter(
            "tollway_ratelimit_rejections", "Requests refused by a rate limit, by dimension.", ["dimension"], registry=r
        )
        self.ratelimit_degraded = Gauge(
            "tollway_ratelimit_degraded",
            "1 while the shared rate-limit backend is unreachable and limits are enforced locally.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ratelimit_local_decisions = Counter(
            "tollway_ratelimit_local_decisions", "Rate-limit decisions taken on local shares (degraded).", registry=r
        )
        self.webhook_deliveries = Counter(
            "tollway_webhook_deliveries", "Webhook delivery attempts by outcome.", ["outcome"], registry=r
        )
        self.outbox_pending = Gauge(
            "tollway_outbox_pending",
            "Webhook deliveries waiting to be sent.",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.store = StoreGauges()
        if multiprocess_dir is None:
            r.register(self.store)
        self._request_children: dict[tuple[str, int], Counter] = {}

    # -- hot path ---------------------------------------------------------------------------------------------

    def request(self, route: str, status: int, added_s: float) -> None:
        """One HTTP response started: a dict lookup, one increment, one observation."""
        child = self._request_children.get((route, status))
        if child is None:
            child = self._request_children[(route, status)] = self.requests.labels(route, str(status))
        child.inc()
        self.added_latency.observe(added_s if added_s > 0 else 0.0)

    def upstream_attempt(self, provider: str, model: str, outcome: str, seconds: float) -> None:
        self.upstream_requests.labels(provider, model, outcome).inc()
        self.upstream_latency.labels(provider).observe(seconds)

    def usage(
        self, model: str, prompt_tokens: int, completion_tokens: int, cost_nanos: int, ttft_ms: int | None
    ) -> None:
        """From a settled usage record (services/billing.py)."""
        if prompt_tokens:
            self.tokens.labels(model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self.tokens.labels(model, "completion").inc(completion_tokens)
        if cost_nanos:
            self.cost.labels(model).inc(cost_nanos)
        if ttft_ms is not None:
            self.ttft.labels(model).observe(ttft_ms / 1000)

    # -- background jobs --------------------------------------------------------------------------------------

    def holds_expired_resolved(self, count: int) -> None:
        if count:
            self.holds_expired.inc(count)

    def ratelimit_rejection(self, dimension: str) -> None:
        self.ratelimit_rejections.labels(dimension).inc()

    def ratelimit_local_decision(self) -> None:
        self.ratelimit_local_decisions.inc()

    def set_ratelimit_degraded(self, degraded: bool) -> None:
        self.ratelimit_degraded.set(1 if degraded else 0)

    def webhook_delivery(self, outcome: str) -> None:
        """One webhook delivery attempt ended: ``succeeded``, ``failed`` (will retry or gave up) or ``gone`` (410)."""
        self.webhook_deliveries.labels(outcome).inc()

    def set_outbox_pending(self, pending: int) -> None:
        """Deliveries waiting to be sent, as last counted by the webhook dispatcher (any instance)."""
        self.outbox_pending.set(pending)

    # -- exposition -------------------------------------------------------------------------------------------

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self._registry)
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        registry.register(self.store)
        return generate_latest(registry)

    def process_exited(self) -> None:
        """Drop this worker's live gauges (``livemax``) from the shared directory (multiprocess mode)."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]
