"""Who else serves this database (SPEC §13.2): instances beat a heartbeat row every 5 s; one without Redis must be
alone, since its in-process rate limits would otherwise be multiplied by the number of instances.

``SoleInstanceWatch`` is the pure rule of the start-up check: a heartbeat that moves while we watch is a live
instance (refuse); one that stays older than ``STALE_AFTER_S`` is a crashed one (ignore); a process on this host
whose pid no longer exists is gone at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

HEARTBEAT_EVERY_S: Final = 5.0
STALE_AFTER_S: Final = 15.0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    id: str
    hostname: str
    pid: int
    uses_redis: bool
    heartbeat_at: datetime


class Verdict(StrEnum):
    ALONE = "alone"
    WAIT = "wait"
    ANOTHER_LIVES = "another_lives"


@dataclass(slots=True)
class SoleInstanceWatch:
    """Feed it what the database says, every second or so, until it answers ALONE or ANOTHER_LIVES."""

    first_seen: dict[str, datetime] = field(default_factory=dict)
    culprit: Heartbeat | None = None

    def observe(self, others: list[Heartbeat], now: datetime) -> Verdict:
        fresh = [h for h in others if now - h.heartbeat_at < timedelta(seconds=STALE_AFTER_S)]
        for beat in fresh:
            seen = self.first_seen.setdefault(beat.id, beat.heartbeat_at)
            if beat.heartbeat_at > seen:
                self.culprit = beat
                return Verdict.ANOTHER_LIVES
        return Verdict.WAIT if fresh else Verdict.ALONE
