"""Retries and fallback before the first byte reaches the client (SPEC §14.2).

Same row again (at most 2 retries) on connection errors, 502/503/504 and a 429 that is not quota-exhausted,
waiting for Retry-After (else 0.5 s, then 1 s) only when the wait ends before the deadline; the next candidate at
once on 401/403/404/500 and quota-exhausted 429; 400/413/422 are returned at once. Every failed attempt is
reported to ``on_failure`` so that it is logged with zero cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from tollway.domain.catalog import Candidate
from tollway.errors import UpstreamError, UpstreamTimeout

T = TypeVar("T")

_RETRY_STATUSES = frozenset({502, 503, 504})
_RETURN_AT_ONCE = frozenset({400, 413, 422})
_DEFAULT_WAITS = (0.5, 1.0)
MAX_RETRIES = 2


def _retryable(error: UpstreamError) -> bool:
    status = error.upstream_status
    if status is None:
        return True
    if status == 429:
        return not error.quota_exhausted
    return status in _RETRY_STATUSES


async def with_fallback(
    candidates: Sequence[Candidate],
    attempt: Callable[[Candidate], Awaitable[T]],
    on_failure: Callable[[Candidate, UpstreamError], None],
    deadline: float,
) -> tuple[Candidate, T]:
    loop = asyncio.get_running_loop()
    last: UpstreamError | None = None
    for candidate in candidates:
        retries = 0
        while True:
            try:
                return candidate, await attempt(candidate)
            except UpstreamError as error:
                last = error
                on_failure(candidate, error)
                if error.upstream_status in _RETURN_AT_ONCE:
                    raise
                if not _retryable(error) or retries >= MAX_RETRIES:
                    break
                wait = error.retry_after_s if error.retry_after_s is not None else _DEFAULT_WAITS[retries]
                if loop.time() + wait >= deadline:
                    break
                retries += 1
                await asyncio.sleep(wait)
        if loop.time() >= deadline:
            break
    assert last is not None
    if isinstance(last, UpstreamTimeout):
        raise last
    raise UpstreamError(last.message, upstream_status=last.upstream_status)
