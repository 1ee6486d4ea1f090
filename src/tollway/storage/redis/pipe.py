"""One pipelined Redis connection for the rate limiter's hot path (SPEC §10).

Commands are written the moment they are issued, many may be on their way at once, and replies are matched to them
in order (Redis answers each connection in order). hiredis packs the commands and parses the replies; this module
only keeps the queue of waiting futures and one watchdog timer. redis-py's connection does the same work through a
stream reader, a lock, a pool and a timeout per call, about 30 µs more per admission on our test machine; one
connection per instance also makes a batch of corrections a single socket write (docs/performance.md).

A reply that is an error (``NOSCRIPT`` …) is returned as a ``hiredis.ReplyError`` value, never raised: callers of a
batch decide per command. A broken, closed or silent connection fails every command waiting on it with
``RedisPipeError``; silent means the oldest command has had no reply for ``timeout_s`` (one timer per connection,
not one per command).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import hiredis

from tollway.settings import RedisEndpoint

ReplyError: Final = hiredis.ReplyError
Command = tuple[str | int, ...]

_pack = cast(Callable[[Command], bytes], hiredis.pack_command)  # its stub types the argument as a 1-tuple


class RedisPipeError(ConnectionError):
    """The connection could not be opened, broke, was closed or went silent."""


class RedisPipe(asyncio.Protocol):
    """Open one with ``open_pipe``; ``send`` and ``call`` return futures of the replies."""

    def __init__(self, timeout_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout_s = timeout_s
        self._reader = hiredis.Reader()
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    # -- asyncio.Protocol ----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                future = self._waiting.popleft()[0]
                if not future.done():  # its caller was cancelled: the reply is dropped, the order kept
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self._fail(RedisPipeError(f"Redis sent what it was not asked for ({exc.__class__.__name__})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisPipeError("the Redis connection was lost"))

    # -- commands ------------------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Commands written and not answered yet."""
        return len(self._waiting)

    def call(self, *command: str | int) -> asyncio.Future[Any]:
        return self.send((command,))[0]

    def send(self, commands: Sequence[Command]) -> list[asyncio.Future[Any]]:
        """Writes every command at once (one system call); their replies arrive in the same order."""
        if self.closed or self._transport is None:
            raise RedisPipeError("the Redis connection is closed")
        now = self._loop.time()
        futures = [self._loop.create_future() for _ in commands]
        self._waiting.extend((future, now) for future in futures)
        self._transport.write(b"".join([_pack(command) for command in commands]))
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(now + self._timeout_s, self._check)
        return futures

    def close(self) -> None:
        self._fail(RedisPipeError("the Redis connection was closed"))

    def _check(self) -> None:
        """The oldest command waiting is the next to be answered: once it has waited ``timeout_s``, Redis is
        silent, and every command behind it fails with it."""
        self._watchdog = None
        if not self._waiting:
            return
        deadline = self._waiting[0][1] + self._timeout_s
        if self._loop.time() >= deadline:
            self._fail(RedisPipeError(f"Redis did not answer within {self._timeout_s:g} s"))
        else:
            self._watchdog = self._loop.call_at(deadline, self._check)

    def _fail(self, error: RedisPipeError) -> None:
        if self.closed:
            return
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._transport is not None:
            self._transport.abort()
        waiting, self._waiting = self._waiting, collections.deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a caller that gave up must not leave a warning behind


async def open_pipe(endpoint: RedisEndpoint, timeout_s: float, greeting: Sequence[Command] = ()) -> RedisPipe:
    """Connects, logs in (AUTH, SELECT) and sends ``greeting`` (e.g. SCRIPT LOAD), all within the endpoint's
    connect timeout; raises ``RedisPipeError`` when any of it fails."""
    loop = asyncio.get_running_loop()
    pipe: RedisPipe | None = None
    login: list[Command] = []
    if endpoint.password is not None:
        user = (endpoint.username,) if endpoint.username else ()
        login.append(("AUTH", *user, endpoint.password))
    if endpoint.db:
        login.append(("SELECT", endpoint.db))
    try:
        async with asyncio.timeout(endpoint.connect_timeout_s):
            if endpoint.path is not None:
                _, pipe = await loop.create_unix_connection(lambda: RedisPipe(timeout_s), endpoint.path)
            else:
                _, pipe = await loop.create_connection(
                    lambda: RedisPipe(timeout_s), endpoint.host, endpoint.port, ssl=endpoint.tls
                )
            steps = [*login, *greeting]
            replies = [await future for future in pipe.send(steps)] if steps else []
            for step, reply in zip(steps, replies, strict=True):
                if isinstance(reply, ReplyError):
                    raise RedisPipeError(f"Redis refused {step[0]}: {str(reply).split(' ')[0]}")
    except BaseException as exc:
        if pipe is not None:
            pipe.close()
        if isinstance(exc, OSError) and not isinstance(exc, RedisPipeError):
            raise RedisPipeError(f"could not connect to Redis: {exc.__class__.__name__}") from exc
        raise
    return pipe
