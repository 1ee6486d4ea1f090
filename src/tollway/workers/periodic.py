"""Small periodic jobs every instance runs (SPEC §13.3): period resets within 60 s of the boundary, idempotency
record pruning hourly. Each item is claimed under a row lock by the job itself, so instances never double-apply."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from tollway.domain.clock import utcnow

log = logging.getLogger("tollway.jobs")

Job = Callable[[datetime], Awaitable[int]]


async def every(interval_s: float, name: str, job: Job) -> None:
    """Run ``job(now)`` forever, ``interval_s`` apart; a failure is logged and retried at the next interval."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            done = await job(utcnow())
            if done:
                log.info("%s: %d item(s)", name, done)
        except Exception:
            log.exception("%s failed; retrying at the next interval", name)
