"""Deployment health for retries and fallback (SPEC §14.2): a circuit breaker per model row and a retry budget per
provider, both in-process and driven by an injectable monotonic clock.

- Circuit breaker: after 5 consecutive failures a row is skipped for 30 s, then let through for one trial request
  at a time (half-open); a success closes it, a failure opens it for another 30 s.
- Retry budget: retries to a provider are capped at 20 % of its requests (first attempts) over a sliding 10 s
  window, with a floor of ``min_retries`` per window so that a provider seeing little traffic still gets the two
  retries a single request may make.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

Clock = Callable[[], float]

FAILURE_THRESHOLD: Final = 5
OPEN_S: Final = 30.0
RETRY_RATIO: Final = 0.2
RETRY_WINDOW_S: Final = 10.0
MIN_RETRIES: Final = 10


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class _Row:
    failures: int = 0
    opened_at: float | None = None
    trial_running: bool = False


class CircuitBreaker:
    """Per model row: ``admit`` before an attempt, then exactly one of ``success``, ``failure`` or ``release``."""

    def __init__(
        self, clock: Clock = time.monotonic, *, threshold: int = FAILURE_THRESHOLD, open_s: float = OPEN_S
    ) -> None:
        self._clock = clock
        self._threshold = threshold
        self._open_s = open_s
        self._rows: dict[str, _Row] = {}

    def state(self, row_id: str) -> BreakerState:
        row = self._rows.get(row_id)
        if row is None or row.opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - row.opened_at < self._open_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def half_opens_in(self, row_id: str) -> float:
        """Seconds until an open row lets a trial through (0 when it is not open): the ``Retry-After`` of a 503
        ``provider_unavailable`` (SPEC §14.2)."""
        row = self._rows.get(row_id)
        if row is None or row.opened_at is None:
            return 0.0
        return max(0.0, self._open_s - (self._clock() - row.opened_at))

    def admit(self, row_id: str) -> bool:
        """May this row be called now? In half-open state only one trial runs at a time."""
        state = self.state(row_id)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        row = self._rows[row_id]
        if row.trial_running:
            return False
        row.trial_running = True
        return True

    def success(self, row_id: str) -> None:
        self._rows.pop(row_id, None)

    def failure(self, row_id: str) -> None:
        row = self._rows.setdefault(row_id, _Row())
        row.trial_running = False
        row.failures += 1
        if row.opened_at is not None or row.failures >= self._threshold:
            row.opened_at = self._clock()  # a failed trial opens the circuit again for the full period

    def release(self, row_id: str) -> None:
        """The attempt ended without saying anything about the row (cancelled; a request-side 4xx)."""
        row = self._rows.get(row_id)
        if row is not None:
            row.trial_running = False


@dataclass(slots=True)
class _Window:
    requests: deque[float] = field(default_factory=deque)
    retries: deque[float] = field(default_factory=deque)


class RetryBudget:
    """Per provider: ``request`` for every first attempt, ``try_retry`` before every retry."""

    def __init__(
        self,
        clock: Clock = time.monotonic,
        *,
        ratio: float = RETRY_RATIO,
        window_s: float = RETRY_WINDOW_S,
        min_retries: int = MIN_RETRIES,
    ) -> None:
        self._clock = clock
        self._ratio = ratio
        self._window_s = window_s
        self._min_retries = min_retries
        self._providers: dict[str, _Window] = {}

    def _window(self, provider_id: str) -> _Window:
        window = self._providers.setdefault(provider_id, _Window())
        horizon = self._clock() - self._window_s
        for stamps in (window.requests, window.retries):
            while stamps and stamps[0] <= horizon:
                stamps.popleft()
        return window

    def request(self, provider_id: str) -> None:
        self._window(provider_id).requests.append(self._clock())

    def try_retry(self, provider_id: str) -> bool:
        """Take one retry from the budget; False when the provider has used its share of the window."""
        window = self._window(provider_id)
        allowed = max(self._min_retries, int(self._ratio * len(window.requests)))
        if len(window.retries) >= allowed:
            return False
        window.retries.append(self._clock())
        return True


@dataclass(slots=True)
class DeploymentHealth:
    """What retries and fallback consult: one per process (built with the inference service)."""

    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    budget: RetryBudget = field(default_factory=RetryBudget)

    @classmethod
    def with_clock(cls, clock: Clock) -> DeploymentHealth:
        return cls(CircuitBreaker(clock), RetryBudget(clock))
