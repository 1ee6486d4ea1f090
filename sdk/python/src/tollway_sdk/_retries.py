"""When to retry a request and how long to wait first.

Only requests that are safe to send twice are retried: idempotent methods (GET, PUT, DELETE, HEAD, OPTIONS) and
requests carrying an ``Idempotency-Key`` (the server replays the first outcome, SPEC §9.7). They are retried on a
connection error or timeout, on 429 and 503 (waiting what ``Retry-After`` says), and, for keyed requests, on 409
``idempotency_in_progress`` (the first attempt is still running). Without ``Retry-After`` the wait is an exponential
backoff with jitter.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Final

import httpx

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES: Final = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    initial_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 60.0  # a server asking for a longer wait is answered with the error, not a sleep

    def may_retry(self, request: httpx.Request) -> bool:
        """Whether sending ``request`` again can never apply its effect twice."""
        return request.method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers

    def retry_after(self, response: httpx.Response) -> float | None:
        """The wait before retrying ``response``'s request, or None when it must not be retried."""
        if response.status_code in RETRY_STATUSES:
            asked = parse_retry_after(response.headers.get("retry-after"))
            if asked is None:
                return -1.0  # no header: the caller backs off
            return asked if asked <= self.max_retry_after_s else None
        if response.status_code == 409 and "idempotency-key" in response.request.headers:
            return -1.0 if _code(response) == "idempotency_in_progress" else None
        return None

    def backoff(self, retries_done: int) -> float:
        """Exponential backoff, 0.5 s, 1 s, 2 s... capped, each shortened by up to a quarter at random."""
        delay = min(self.initial_delay_s * 2.0**retries_done, self.max_delay_s)
        return delay * (1.0 - 0.25 * random.random())

    def delay(self, retries_done: int, asked: float) -> float:
        """``asked`` is the server's ``Retry-After`` (honoured, plus up to 10 % so that clients spread), or < 0."""
        if asked < 0:
            return self.backoff(retries_done)
        return asked * (1.0 + 0.1 * random.random())


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, seconds) if seconds == seconds else None  # NaN is no answer


def _code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None
