"""Instance presence (SPEC §13.2): every serving process beats a heartbeat row every 5 s and deletes it on a clean
exit; ``ensure_alone`` is the start-up check that refuses a second instance without Redis on one database."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime

from tollway.domain.clock import utcnow
from tollway.domain.ids import new_id
from tollway.domain.instances import HEARTBEAT_EVERY_S, STALE_AFTER_S, Heartbeat, SoleInstanceWatch, Verdict
from tollway.domain.ports.operations import InstanceRegistry

log = logging.getLogger("tollway.instances")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]


class AnotherInstanceRunning(Exception):
    """Raised by ``ensure_alone``; the CLI prints it as its one stderr line and exits non-zero."""


def _process_gone(beat: Heartbeat, hostname: str) -> bool:
    """A row of this host whose pid no longer exists was left by a crash: no need to wait it out."""
    if beat.hostname != hostname or beat.pid == os.getpid():
        return False
    try:
        os.kill(beat.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def ensure_alone(
    instances: InstanceRegistry, *, clock: Clock = utcnow, sleep: Sleep = asyncio.sleep, poll_s: float = 1.0
) -> None:
    """Return once no other instance heartbeats in this database; a stale heartbeat is waited out (≤ 15 s)."""
    hostname = socket.gethostname()
    watch = SoleInstanceWatch()
    while True:
        rows = await instances.others(None)
        gone = [b for b in rows if _process_gone(b, hostname)]
        await instances.forget([b.id for b in gone])
        verdict = watch.observe([b for b in rows if b not in gone], clock())
        if verdict is Verdict.ALONE:
            return
        if verdict is Verdict.ANOTHER_LIVES:
            other = watch.culprit
            assert other is not None
            raise AnotherInstanceRunning(
                f"another Tollway instance (host {other.hostname}, pid {other.pid}) heartbeats in this database;"
                " running more than one instance needs Redis: set TOLLWAY_REDIS_URL"
            )
        await sleep(poll_s)


class Presence:
    """This process's heartbeat row, beaten every 5 s while it serves."""

    def __init__(
        self, instances: InstanceRegistry, uses_redis: bool, clock: Clock = utcnow, instance_id: str | None = None
    ) -> None:
        """``instance_id``: the id this process goes by (its settlement journal has the same name)."""
        self._instances = instances
        self._clock = clock
        self.beat = Heartbeat(instance_id or new_id(), socket.gethostname(), os.getpid(), uses_redis, clock())

    async def start(self) -> None:
        await self._instances.register(self.beat)
        if not self.beat.uses_redis:
            now = self._clock()
            others = await self._instances.others(self.beat.id)
            # Started at the same moment as another one: the CLI check could not see it yet.
            if any((now - b.heartbeat_at).total_seconds() < STALE_AFTER_S for b in others):
                log.error("another instance shares this database and this one has no Redis: limits are per instance")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY_S)
            try:
                await self._instances.beat(self.beat.id, self._clock())
            except Exception:  # a missed beat only delays another instance's start-up check
                log.warning("could not write the instance heartbeat", exc_info=True)

    async def leave(self) -> None:
        try:
            await self._instances.leave(self.beat.id)
        except Exception:
            log.warning("could not remove the instance heartbeat; it goes stale in 15 s", exc_info=True)
