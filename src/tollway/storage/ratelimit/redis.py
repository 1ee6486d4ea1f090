"""The Redis rate-limit backend (SPEC §10): one atomic Lua script per check-and-count, on the Redis server clock, so
every instance sees one exact window per end user.

Keys per end user (one hash tag, so a cluster keeps them on one slot), both expiring on their own:
    tollway:rl:{<end user>}:w   sorted set: admission id -> admission time (ms), the last 60 s (expires 61 s idle)
    tollway:rl:{<end user>}:s   hash: admission id -> tokens reserved, '#' -> their sum, 'd' -> the UTC day number,
                                'n' -> requests admitted that day (expires a minute after the next midnight)
and one key for the whole server, which nothing expires:
    tollway:rl:epoch            a random value set by the first connection that finds it missing: a Redis that
                                restarted empty (or was flushed) lost it, so a connection that finds another value
                                than the one it knew knows the windows were lost (``ping`` says so)
The scripts (``scripts.py``) mirror ``domain.ratelimit.decide`` and the wait functions beside it. Every Redis
failure is raised as ``RateLimitBackendDown``; the failover backend turns that into local limits, never into a 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any, Final

from tollway.domain.platform_settings import RateLimits
from tollway.domain.ratelimit import (
    Decision,
    Dimension,
    RateLimitBackendDown,
    Reservation,
    TokenDemand,
    WriteBack,
)
from tollway.settings import RedisEndpoint
from tollway.storage.ratelimit.scripts import ADJUST_LUA, ADMIT_LUA, RESTORE_LUA
from tollway.storage.redis.pipe import RedisPipe, RedisPipeError, ReplyError, open_pipe

__all__ = ["ADMIT_LUA", "CORRECTION_DELAY_S", "EPOCH_KEY", "ORIGIN", "RedisRateLimitBackend"]

ORIGIN: Final = "redis"
EPOCH_KEY: Final = "tollway:rl:epoch"
log = logging.getLogger("tollway.ratelimit")

# How long TPM corrections gather before they go to Redis together.
CORRECTION_DELAY_S: Final = 0.005
_Correction = tuple[str, str, int]  # end-user key, admission id, tokens
_Call = tuple["_Script", str, tuple[str | int, ...]]  # script, end-user key, arguments

_TPM_BIT: Final = 4
_DIMENSION_BITS: Final = ((1, Dimension.RPM), (2, Dimension.RPD), (_TPM_BIT, Dimension.TPM))
_FAILURES: Final = (RedisPipeError, OSError)


def _keys(key: str) -> tuple[str, str]:
    prefix = f"tollway:rl:{{{key}}}:"
    return prefix + "w", prefix + "s"


def _no_script(reply: Any) -> bool:
    return isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT")


class _Script:
    """A Lua script and its SHA1, for EVALSHA. Every connection loads both scripts when it opens; a command answered
    NOSCRIPT (a flushed script cache) did not run, so loading the script and running it once more counts once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def command(self, key: str, args: tuple[str | int, ...]) -> tuple[str | int, ...]:
        return ("EVALSHA", self.sha, 2, *_keys(key), *args)


_ADMIT: Final = _Script(ADMIT_LUA)
_ADJUST: Final = _Script(ADJUST_LUA)
_RESTORE: Final = _Script(RESTORE_LUA)
_LOAD_SCRIPTS: Final = tuple(("SCRIPT", "LOAD", script.source) for script in (_ADMIT, _ADJUST, _RESTORE))


class WindowsLost(RateLimitBackendDown):
    """Redis answers but lost the windows (a restart, a flush): admitting now would forget what was admitted."""


async def _busy_poll(future: asyncio.Future[Any], seconds: float) -> None:
    """Yields to the event loop until ``future`` is done or ``seconds`` pass: the loop keeps polling its sockets
    (other tasks run as usual) instead of putting the core to sleep, which on a virtual machine costs more to wake
    from than a reply from Redis takes (docs/performance.md)."""
    until = time.perf_counter() + seconds
    while not future.done() and time.perf_counter() < until:  # noqa: ASYNC110 (polling is the point)
        await asyncio.sleep(0)


class RedisRateLimitBackend:
    """One round trip (EVALSHA) per admission, on one pipelined connection per instance (``RedisPipe``): many
    admissions may be on their way at once and Redis runs them in the order they were written. TPM corrections are
    queued and written together after ``CORRECTION_DELAY_S``, so they cost a fraction of a round trip each and
    never stall a request; an admission refused for TPM while corrections of its end user are queued or on their
    way lets them land and asks once more. A silent Redis fails every call waiting on the connection once the
    oldest has waited ``timeout_s``. ``clock_ms`` is for tests only: the script then runs on it instead of the
    server clock."""

    origin = ORIGIN

    def __init__(
        self,
        endpoint: RedisEndpoint,
        *,
        timeout_s: float = 0.25,
        busy_poll_s: float = 0.0,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._timeout_s = timeout_s
        self._busy_poll_s = busy_poll_s
        self._warned_at = -math.inf
        self._clock_ms = clock_ms
        self._prefix = os.urandom(6).hex() + ":"  # admission ids unique across instances without a round trip
        self._ids = itertools.count(1)
        self._corrections: list[_Correction] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._sending: dict[asyncio.Task[None], frozenset[str]] = {}  # correction batches on their way, by end user
        self._running: dict[str, float] = {}  # admitted here, no correction yet: admission id -> when (monotonic)
        self._pipe: RedisPipe | None = None
        self._opening: asyncio.Task[RedisPipe] | None = None
        self._epoch: str | None = None  # the value of EPOCH_KEY this instance knows; None before it connected
        self._lost = False  # a connection found another epoch since ``ping`` last said so

    async def _connection(self) -> RedisPipe:
        """The open connection, or a new one; callers that arrive while it opens share that attempt."""
        pipe = self._pipe
        if pipe is not None and not pipe.closed:
            return pipe
        if self._opening is None:
            self._opening = asyncio.get_running_loop().create_task(self._open())
            self._opening.add_done_callback(self._opened)
        return await asyncio.shield(self._opening)

    async def _open(self) -> RedisPipe:
        pipe = await self._open_checked()
        if self._lost:
            pipe.close()  # the failover writes back first, through ``ping`` and ``restore``
            raise WindowsLost("Redis lost the rate-limit windows (restarted empty or flushed)")
        self._pipe = pipe
        return pipe

    async def _open_checked(self) -> RedisPipe:
        """A new connection, the scripts loaded and the epoch read: the first connection sets it, any later one
        that finds another value marks the windows lost."""
        pipe = await open_pipe(self._endpoint, self._timeout_s, _LOAD_SCRIPTS)
        try:
            candidate = os.urandom(8).hex()
            _, epoch = [await f for f in pipe.send([("SET", EPOCH_KEY, candidate, "NX"), ("GET", EPOCH_KEY)])]
        except BaseException:
            pipe.close()
            raise
        epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        if self._epoch is not None and epoch != self._epoch:
            self._lost = True
        self._epoch = epoch
        return pipe

    def _opened(self, task: asyncio.Task[RedisPipe]) -> None:
        self._opening = None
        if not task.cancelled():
            task.exception()  # retrieved here: every caller got it already

    async def _run(self, calls: list[_Call], *, poll: bool = False) -> list[Any]:
        """Writes the calls at once and returns their replies. A call answered NOSCRIPT did not run; only those run
        again, once the scripts are loaded, so nothing counts twice. An admission last in ``calls`` that ran
        without a correction before it (NOSCRIPT) and was refused asks again after that correction. Any failure is
        ``RateLimitBackendDown``. ``poll``: busy-poll while nothing else waits on the connection."""
        try:
            pipe = await self._connection()
            commands = [script.command(key, args) for script, key, args in calls]
            futures = pipe.send(commands)
            if poll and pipe.in_flight == len(futures):
                await _busy_poll(futures[-1], self._busy_poll_s)
            replies = [await future for future in futures]
            missing = [i for i, reply in enumerate(replies) if _no_script(reply)]
            if missing:
                last = len(calls) - 1
                answer = replies[last]
                if calls[last][0] is _ADMIT and isinstance(answer, list) and answer[0]:
                    missing.append(last)  # a refusal counted nothing
                retry = [*_LOAD_SCRIPTS, *(commands[i] for i in missing)]
                again = [await future for future in pipe.send(retry)][len(_LOAD_SCRIPTS) :]
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except _FAILURES as exc:
            raise RateLimitBackendDown(f"Redis rate limiter unavailable: {exc}") from exc
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise RateLimitBackendDown(f"Redis rate limiter refused a script: {str(reply).split(' ')[0]}")
        return replies

    def _lone(self) -> bool:
        """Whether no other call admitted here is still running (its correction not queued yet): the instance is
        nearly idle, so polling for the reply costs CPU time nobody else needs. Under load it never polls. A call
        that never reports back (a crash) stops counting once its reservation left the window."""
        open_calls = self._running
        while open_calls:
            entry_id, admitted_at = next(iter(open_calls.items()))
            if time.monotonic() - admitted_at < 60:
                return False
            del open_calls[entry_id]
        return True

    async def admit(self, key: str, limits: RateLimits, demand: TokenDemand) -> Decision:
        entry_id = self._prefix + str(next(self._ids))
        now = -1 if self._clock_ms is None else self._clock_ms()
        args = (
            entry_id,
            limits.rpm or 0,
            limits.rpd or 0,
            limits.tpm or 0,
            demand.prompt_tokens,
            demand.n,
            demand.output_limit,
            demand.min_output,
            now,
        )
        admission: _Call = (_ADMIT, key, args)
        poll = self._busy_poll_s > 0 and self._lone()
        reply: list[int] = (await self._run([admission], poll=poll))[0]
        if reply[0] & _TPM_BIT:
            # Refused for TPM: if corrections of this end user are queued or on their way, let them land and ask
            # again (a refusal counted nothing, so the same admission id can be asked for once more).
            sending = [task for task, keys in self._sending.items() if key in keys]
            if sending or any(correction[0] == key for correction in self._corrections):
                if sending:
                    await asyncio.wait(sending)
                corrections = [(_ADJUST, k, (entry, tokens)) for k, entry, tokens in self._take_corrections()]
                reply = (await self._run([*corrections, admission], poll=poll))[-1]
        bits, wait, count, today, tokens, w_reset, t_reset, d_reset, reserved, clamp = reply
        refused = tuple(dimension for bit, dimension in _DIMENSION_BITS if bits & bit)
        if not refused:
            self._running[entry_id] = time.monotonic()
        return Decision(
            limits,
            refused,
            wait,
            count,
            today,
            tokens,
            w_reset,
            t_reset,
            d_reset,
            reserved_tokens=reserved,
            clamped_output_limit=None if clamp < 0 else clamp,
            reservation=None if refused else Reservation(key, entry_id, ORIGIN),
        )

    def adjust(self, reservation: Reservation, tokens: int) -> None:
        """Queued, not awaited: a correction never stalls a response; ``drain`` sends what is queued and waits.
        Other instances see it within ``CORRECTION_DELAY_S`` (until then the window holds the larger estimate).
        A reservation of another origin (a local admission) is corrected under the id ``restore`` gave it: a no-op
        when it was never written back."""
        self._running.pop(reservation.id, None)
        entry_id = reservation.id if reservation.origin == ORIGIN else self._shared_id(reservation.id)
        self._corrections.append((reservation.key, entry_id, tokens))
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(CORRECTION_DELAY_S, self._flush_corrections)

    def _take_corrections(self) -> list[_Correction]:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        taken, self._corrections = self._corrections, []
        return taken

    def _flush_corrections(self) -> None:
        corrections = self._take_corrections()
        if corrections:
            task = asyncio.get_running_loop().create_task(self._correct(corrections))
            self._sending[task] = frozenset(key for key, _, _ in corrections)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.pop(task, None)

    async def _correct(self, corrections: list[_Correction]) -> None:
        try:
            await self._run([(_ADJUST, key, (entry_id, tokens)) for key, entry_id, tokens in corrections])
        except Exception as exc:  # RateLimitBackendDown, or anything else: a correction never raises
            # The admission leaves the window within 60 s anyway; a lost correction only errs on the safe side.
            # One warning a minute: during an outage every request would log one.
            now = time.monotonic()
            if now - self._warned_at >= 60:
                self._warned_at = now
                log.warning("could not correct TPM reservations: %s", exc)

    async def drain(self) -> None:
        self._flush_corrections()
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def ping(self) -> bool:
        """Whether Redis answers on a fresh connection, which replaces the current one when it does (the current
        one may date from before an outage); True when it lost the windows since the last ping that said so."""
        try:
            pipe = await self._open_checked()
        except _FAILURES as exc:
            raise RateLimitBackendDown(f"Redis rate limiter unavailable: {exc}") from exc
        old, self._pipe = self._pipe, pipe
        if old is not None:
            old.close()
        lost, self._lost = self._lost, False
        return lost

    async def restore(self, write_back: WriteBack) -> None:
        """One restore script per end user, all written at once: each is atomic, so another instance sees all of
        an end user's written-back admissions or none. Local admissions get ids unique to this instance."""
        now = -1 if self._clock_ms is None else self._clock_ms()
        calls: list[_Call] = []
        for user in write_back.users:
            args: list[str | int] = [now, write_back.as_of_ms, user.day, user.requests]
            for entry_id, stamp, tokens in user.entries:
                args += (self._shared_id(entry_id), stamp, tokens)
            calls.append((_RESTORE, user.key, tuple(args)))
        if calls:
            await self._run(calls)

    def _shared_id(self, entry_id: str) -> str:
        """The id in Redis of an admission this instance made: Redis's own, or its local id made unique."""
        return entry_id if entry_id.startswith(self._prefix) else self._prefix + "l" + entry_id

    async def close(self) -> None:
        await self.drain()
        if self._opening is not None:
            self._opening.cancel()
        if self._pipe is not None:
            self._pipe.close()
