"""The Redis rate-limit backend (SPEC §10): one atomic Lua script per check-and-count, on the Redis server clock, so
every instance sees one exact window per end user.

Keys per end user (one hash tag, so a cluster keeps them on one slot), both expiring on their own:
    tollway:rl:{<end user>}:w   sorted set: admission id -> admission time (ms), the last 60 s (expires 61 s idle)
    tollway:rl:{<end user>}:s   hash: admission id -> tokens reserved, '#' -> their sum, 'd' -> the UTC day number,
                                'n' -> requests admitted that day (expires a minute after the next midnight)
The admit script mirrors ``domain.ratelimit.decide`` and the wait functions beside it. Every Redis failure is
raised as ``RateLimitBackendDown``; the failover backend turns that into local limits, never into a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from tollway.domain.platform_settings import RateLimits
from tollway.domain.ratelimit import Decision, Dimension, RateLimitBackendDown, Reservation, TokenDemand

ORIGIN: Final = "redis"
log = logging.getLogger("tollway.ratelimit")

# ARGV[1]: "id rpm rpd tpm T_p n output_limit min_output now_ms" (limit 0 = none; now_ms -1 = the server clock).
# Returns "refused wait in_window today tokens window_reset tokens_reset day_reset reserved clamp": refused is a
# bitmask (1 rpm, 2 rpd, 4 tpm), clamp -1 when none. One argument and one string reply because redis-py's parser
# and packer pay per element (13 arguments and a 10-element array cost more than the script); every redis.call
# costs a few microseconds, so the admitting path makes as few as it can (8, TIME included).
ADMIT_LUA: Final = """
local WINDOW, DAY = 60000, 86400000
local win, st = KEYS[1], KEYS[2]
local a = {}
for part in string.gmatch(ARGV[1], '%S+') do a[#a + 1] = part end
local id = a[1]
local now = tonumber(a[9])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local cutoff = now - WINDOW
local state = redis.call('HMGET', st, '#', 'd', 'n')
local stored = tonumber(state[1]) or 0
local sum = stored
local day = math.floor(now / DAY)
local today = 0
if tonumber(state[2]) == day then today = tonumber(state[3]) or 0 end
while true do
  local old = redis.call('ZRANGEBYSCORE', win, '-inf', cutoff, 'LIMIT', 0, 500)
  if #old == 0 then break end
  local amounts = redis.call('HMGET', st, unpack(old))
  for i = 1, #amounts do sum = sum - (tonumber(amounts[i]) or 0) end
  redis.call('HDEL', st, unpack(old))
  redis.call('ZREM', win, unpack(old))
end
local count = redis.call('ZCARD', win)
if count == 0 then
  -- The window expired while idle (or never existed): drop whatever admissions the state hash still holds.
  if redis.call('HLEN', st) > 3 then
    redis.call('DEL', st)
    stored = 0
    if today > 0 then
      redis.call('HSET', st, 'd', day, 'n', today)
      redis.call('PEXPIRE', st, (day + 1) * DAY - now + WINDOW)
    end
  end
  sum = 0
end
local rpm, rpd, tpm = tonumber(a[2]), tonumber(a[3]), tonumber(a[4])
local prompt, n, out, minout = tonumber(a[5]), tonumber(a[6]), tonumber(a[7]), tonumber(a[8])
local refused, wait = 0, 0
if rpm > 0 and count >= rpm then
  refused = refused + 1
  local at = redis.call('ZRANGE', win, count - rpm, count - rpm, 'WITHSCORES')
  wait = math.max(wait, tonumber(at[2]) + WINDOW - now)
end
if rpd > 0 and today >= rpd then
  refused = refused + 2
  wait = math.max(wait, (day + 1) * DAY - now)
end
local reserve, clamp = prompt + n * out, -1
if tpm > 0 then
  local headroom = tpm - sum
  local minimum = prompt + n * math.min(minout, out)
  if reserve > headroom then
    if minimum <= headroom then
      clamp = math.floor((headroom - prompt) / n)
      reserve = prompt + n * clamp
    else
      refused = refused + 4
      local tw = WINDOW
      if minimum <= tpm then
        local excess, freed, start, found = sum - (tpm - minimum), 0, 0, false
        while not found do
          local batch = redis.call('ZRANGE', win, start, start + 199, 'WITHSCORES')
          if #batch == 0 then break end
          local ids = {}
          for i = 1, #batch, 2 do ids[#ids + 1] = batch[i] end
          local amounts = redis.call('HMGET', st, unpack(ids))
          for i = 1, #ids do
            freed = freed + (tonumber(amounts[i]) or 0)
            if freed >= excess then
              tw = math.max(0, tonumber(batch[2 * i]) + WINDOW - now)
              found = true
              break
            end
          end
          start = start + 200
        end
      end
      wait = math.max(wait, tw)
    end
  end
end
local until_midnight = (day + 1) * DAY - now
if refused == 0 then
  redis.call('ZADD', win, now, id)
  count, today, sum = count + 1, today + 1, sum + reserve
  redis.call('HSET', st, id, reserve, '#', sum, 'd', day, 'n', today)
  redis.call('PEXPIRE', win, WINDOW + 1000)
  redis.call('PEXPIRE', st, until_midnight + WINDOW)
  local treset = 0
  if sum > 0 then treset = WINDOW end
  return string.format('0 0 %d %d %d %d %d %d %d %d', count, today, sum, WINDOW, treset, until_midnight, reserve, clamp)
end
if sum ~= stored then
  redis.call('HSET', st, '#', sum)  -- what the trim took out, also when nothing is admitted
end
local wreset, treset = 0, 0
if count > 0 then
  local last = redis.call('ZRANGE', win, -1, -1, 'WITHSCORES')
  wreset = math.max(0, tonumber(last[2]) + WINDOW - now)
  if sum > 0 then treset = wreset end
end
return string.format('%d %d %d %d %d %d %d %d 0 -1', refused, wait, count, today, sum, wreset, treset, until_midnight)
"""

# ARGV: id, tokens. A no-op once the admission left the window (or its keys expired).
ADJUST_LUA: Final = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
if not old then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], '#', tonumber(ARGV[2]) - tonumber(old))
return 1
"""

# How long TPM corrections gather before they go to Redis together.
CORRECTION_DELAY_S: Final = 0.005
_Correction = tuple[str, str, int]  # end-user key, admission id, tokens

_TPM_BIT: Final = 4
_DIMENSION_BITS: Final = ((1, Dimension.RPM), (2, Dimension.RPD), (_TPM_BIT, Dimension.TPM))
_FAILURES: Final = (RedisError, OSError)  # asyncio.timeout's TimeoutError is an OSError


def connect(url: str, *, max_connections: int = 128, connect_timeout_s: float = 0.25) -> aioredis.Redis:
    """A client that never retries (a retried admission could count twice) and has no socket timeout of its own:
    redis-py implements that with a task per command, which costs more than the command. ``RedisRateLimitBackend``
    bounds each call with one ``asyncio.timeout`` and its number in flight (so the pool never grows past it)."""
    return aioredis.Redis.from_url(
        url,
        max_connections=max_connections,
        socket_timeout=None,
        socket_connect_timeout=connect_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


def _refusal_bits(reply: bytes) -> int:
    """An admit script's refusal bitmask: the first field of its reply (0: admitted)."""
    return int(reply.split(b" ", 1)[0])


def _keys(key: str) -> list[str]:
    prefix = f"tollway:rl:{{{key}}}:"
    return [prefix + "w", prefix + "s"]


class _Script:
    """A Lua script and its SHA1, for EVALSHA. Whoever gets NOSCRIPT (a restarted or flushed Redis) loads it and runs
    it once more, which cannot count twice: a script that is not loaded did not run."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


_ADMIT: Final = _Script(ADMIT_LUA)
_ADJUST: Final = _Script(ADJUST_LUA)


class RedisRateLimitBackend:
    """One round trip (EVALSHA) per admission. TPM corrections are queued and sent together, in one pipeline, after
    ``CORRECTION_DELAY_S``, so they cost a fraction of a round trip each and never compete with the next request;
    an admission refused for TPM while corrections of its end user are queued or on their way lets them land and
    asks once more. At most ``max_in_flight`` calls run at once, each bounded by ``timeout_s``; queued calls fail at
    once when one fails after they began waiting, so a hung Redis costs a request one timeout at most. ``clock_ms``
    is for tests only: the script then runs on it instead of the server clock."""

    origin = ORIGIN

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        timeout_s: float = 0.25,
        max_in_flight: int = 32,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self._client = client
        self._timeout_s = timeout_s
        pool_size = getattr(client.connection_pool, "max_connections", max_in_flight)
        self._slots = asyncio.Semaphore(min(max_in_flight, pool_size))
        self._failed_at = -math.inf
        self._warned_at = -math.inf
        self._clock_ms = clock_ms
        self._prefix = os.urandom(6).hex() + ":"  # admission ids unique across instances without a round trip
        self._ids = itertools.count(1)
        self._pending: set[asyncio.Task[None]] = set()
        self._corrections: list[_Correction] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._sending: dict[asyncio.Task[None], frozenset[str]] = {}  # correction batches on their way, by end user
        self._idle: list[AbstractConnection] = []  # admission connections between calls (at most one per slot)

    async def _run(self, corrections: list[_Correction], admission: tuple[str, str] | None = None) -> Any:
        """The corrections, then the admission (key, packed arguments) if any, in one round trip; the admission's
        reply."""
        started = time.monotonic()
        async with self._slots:
            if self._failed_at >= started:
                raise RateLimitBackendDown("Redis rate limiter unavailable: failed while this call waited")
            try:
                async with asyncio.timeout(self._timeout_s):
                    if not corrections:
                        assert admission is not None
                        return await self._admit_once(*admission)
                    return await self._pipeline(corrections, admission)
            except _FAILURES as exc:
                self._failed_at = time.monotonic()
                await self._drop_idle()
                raise RateLimitBackendDown(f"Redis rate limiter unavailable: {exc.__class__.__name__}") from exc

    async def _admit_once(self, key: str, packed: str) -> Any:
        """The admission's EVALSHA on a connection of this backend's own: the client's pool, retry wrapper and event
        hooks cost about a third of the call. NOSCRIPT loads the script on that connection and runs it once more
        (a script that is not loaded did not run, so nothing counts twice)."""
        conn = self._idle.pop() if self._idle else self._new_connection()
        command = ("EVALSHA", _ADMIT.sha, 2, *_keys(key), packed)
        try:
            try:
                await conn.send_command(*command)
                reply = await conn.read_response()
            except NoScriptError:
                await conn.send_command("SCRIPT", "LOAD", _ADMIT.source)
                await conn.read_response()
                await conn.send_command(*command)
                reply = await conn.read_response()
        except BaseException:
            # Cancelled (the timeout) or failed: the connection may hold an unread reply; it is never reused.
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise
        self._idle.append(conn)
        return reply

    def _new_connection(self) -> AbstractConnection:
        """Built like the client's own (same URL, timeouts, parser), outside its pool."""
        pool = self._client.connection_pool
        return pool.connection_class(**pool.connection_kwargs)

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    async def _pipeline(self, corrections: list[_Correction], admission: tuple[str, str] | None) -> Any:
        """Without MULTI: each script is atomic on its own. A command answered NOSCRIPT (a restarted or flushed
        Redis) did not run; only those run again, once the scripts are loaded, so nothing counts twice."""
        commands: list[tuple[_Script, str, tuple[Any, ...]]] = [
            (_ADJUST, key, (entry_id, tokens)) for key, entry_id, tokens in corrections
        ]
        if admission is not None:
            commands.append((_ADMIT, admission[0], (admission[1],)))
        results = await self._send(commands)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            await self._client.script_load(_ADJUST.source)
            await self._client.script_load(_ADMIT.source)
            last = len(commands) - 1
            answer = results[last]
            if admission is not None and missing[-1] != last and isinstance(answer, bytes) and _refusal_bits(answer):
                # The admission ran without the corrections that failed before it; a refusal counted nothing.
                missing.append(last)
            for i, result in zip(missing, await self._send([commands[i] for i in missing]), strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results[-1] if admission is not None else None

    async def _send(self, commands: list[tuple[_Script, str, tuple[Any, ...]]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for script, key, args in commands:
            pipe.execute_command("EVALSHA", script.sha, 2, *_keys(key), *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    async def admit(self, key: str, limits: RateLimits, demand: TokenDemand) -> Decision:
        entry_id = self._prefix + str(next(self._ids))
        now = -1 if self._clock_ms is None else self._clock_ms()
        packed = (
            f"{entry_id} {limits.rpm or 0} {limits.rpd or 0} {limits.tpm or 0} {demand.prompt_tokens} {demand.n} "
            f"{demand.output_limit} {demand.min_output} {now}"
        )
        reply: bytes = await self._run([], (key, packed))
        if _refusal_bits(reply) & _TPM_BIT:
            # Refused for TPM: if corrections of this end user are queued or on their way, let them land and ask
            # again (a refusal counted nothing, so the same admission id can be asked for once more).
            sending = [task for task, keys in self._sending.items() if key in keys]
            if sending or any(correction[0] == key for correction in self._corrections):
                if sending:
                    await asyncio.wait(sending)
                reply = await self._run(self._take_corrections(), (key, packed))
        bits, wait, count, today, tokens, w_reset, t_reset, d_reset, reserved, clamp = map(int, reply.split())
        refused = tuple(dimension for bit, dimension in _DIMENSION_BITS if bits & bit)
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
        Other instances see it within ``CORRECTION_DELAY_S`` (until then the window holds the larger estimate)."""
        self._corrections.append((reservation.key, reservation.id, tokens))
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
            self._pending.add(task)
            self._sending[task] = frozenset(key for key, _, _ in corrections)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        self._sending.pop(task, None)

    async def _correct(self, corrections: list[_Correction]) -> None:
        try:
            await self._run(corrections)
        except Exception as exc:  # RateLimitBackendDown, or anything else: a correction never raises
            # The admission leaves the window within 60 s anyway; a lost correction only errs on the safe side.
            # One warning a minute: during an outage every request would log one.
            now = time.monotonic()
            if now - self._warned_at >= 60:
                self._warned_at = now
                log.warning("could not correct TPM reservations: %s", exc)

    async def drain(self) -> None:
        self._flush_corrections()
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def ping(self) -> None:
        """Whether Redis answers on a fresh connection: idle ones may date from before an outage, and a command
        on a dead socket fails once (no retries), so they are dropped first."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._drop_idle()
                await self._client.connection_pool.disconnect(inuse_connections=False)
                await self._client.ping()
        except _FAILURES as exc:
            raise RateLimitBackendDown(f"Redis rate limiter unavailable: {exc.__class__.__name__}") from exc
        self._failed_at = -math.inf

    async def close(self) -> None:
        await self.drain()
        await self._drop_idle()
        await self._client.aclose()
