"""The rate limiter's pipelined Redis connection (storage/redis/pipe.py) against a real redis-server, and against
small servers on real sockets that misbehave as a hung or confused Redis would: replies always reach the command
that asked, under both event loops the gateway may run on; a silent server fails every waiting command after the
timeout; passwords, databases and Unix sockets work."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio
import uvloop

from tests.support.redis_server import RedisServer, redis_server_fixture, start_redis_or_skip
from tests.support.servers import free_port
from tests.support.tls import make_certificates
from tollway.domain.platform_settings import RateLimits
from tollway.domain.ratelimit import RateLimitBackendDown, TokenDemand
from tollway.settings import redis_endpoint
from tollway.storage.ratelimit.redis import RedisRateLimitBackend
from tollway.storage.redis.pipe import RedisPipeError, ReplyError, open_pipe

pytestmark = pytest.mark.redis

T = TypeVar("T")
LOOPS = [pytest.param(asyncio.new_event_loop, id="asyncio"), pytest.param(uvloop.new_event_loop, id="uvloop")]
SMALL = TokenDemand(10, 1, 10)


def run(loop_factory: Callable[[], asyncio.AbstractEventLoop], main: Callable[[], Awaitable[T]]) -> T:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from redis_server_fixture()


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_replies_reach_the_command_that_asked_even_when_callers_give_up(
    redis_server: RedisServer, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    async def main() -> None:
        pipe = await open_pipe(redis_endpoint(redis_server.url), 5.0)
        try:
            futures = [pipe.call("ECHO", f"m{i}") for i in range(500)]
            for future in futures[::7]:
                future.cancel()  # callers that left: their replies are dropped, the order kept
            batch = pipe.send([("ECHO", "first"), ("NOSUCHCOMMAND",), ("ECHO", "last")])
            replies = await asyncio.gather(*futures, return_exceptions=True)
            for i, reply in enumerate(replies):
                assert isinstance(reply, asyncio.CancelledError) if i % 7 == 0 else reply == f"m{i}".encode()
            first, error, last = [await future for future in batch]
            assert (first, last) == (b"first", b"last")
            assert isinstance(error, ReplyError) and "unknown command" in str(error)  # a value, not raised
            assert pipe.in_flight == 0 and not pipe.closed
        finally:
            pipe.close()

    run(loop_factory, main)


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_the_backend_admits_exactly_on_either_loop(
    redis_server: RedisServer, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    async def main() -> list[bool]:
        backend = RedisRateLimitBackend(redis_endpoint(redis_server.url, connect_timeout_s=5), timeout_s=5)
        try:
            user = str(uuid.uuid4())
            decisions = await asyncio.gather(*(backend.admit(user, RateLimits(rpm=7), SMALL) for _ in range(40)))
            return [decision.admitted for decision in decisions]
        finally:
            await backend.close()

    assert sum(run(loop_factory, main)) == 7


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_redis(handler: Handler) -> AsyncIterator[str]:
    """A server on a real loopback socket that runs ``handler`` per connection; yields its redis:// URL."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await handler(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def test_a_silent_server_fails_every_waiting_command_once_the_oldest_waited_the_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads everything, answers nothing, until the client hangs up

    async with fake_redis(silent) as url:
        pipe = await open_pipe(redis_endpoint(url), 0.2)
        started = time.monotonic()
        first = pipe.call("PING")
        await asyncio.sleep(0.1)
        second = pipe.call("PING")
        outcomes = await asyncio.gather(first, second, return_exceptions=True)
        waited = time.monotonic() - started
    assert all(isinstance(o, RedisPipeError) and "did not answer within 0.2 s" in str(o) for o in outcomes)
    assert 0.2 <= waited < 1.0  # the oldest command's timeout, not one per command
    assert pipe.closed
    with pytest.raises(RedisPipeError, match="closed"):
        pipe.call("PING")


async def test_a_reply_nobody_asked_for_breaks_the_connection() -> None:
    async def confused(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"PING\r\n")
        writer.write(b"+PONG\r\n+EXTRA\r\n")
        await reader.read()

    async with fake_redis(confused) as url:
        pipe = await open_pipe(redis_endpoint(url), 5.0)
        assert await pipe.call("PING") == b"PONG"
        await asyncio.sleep(0.05)
        assert pipe.closed


async def test_an_unreachable_server_is_a_pipe_error() -> None:
    async with fake_redis(lambda reader, writer: asyncio.sleep(0)) as url:
        pass
    with pytest.raises(RedisPipeError, match="could not connect to Redis"):
        await open_pipe(redis_endpoint(url), 5.0)


async def test_password_and_database(tmp_path: Path) -> None:
    server = await asyncio.to_thread(start_redis_or_skip, ("--requirepass", "pw-right"))
    try:
        good = f"redis://:pw-right@127.0.0.1:{server.port}/3"
        backend = RedisRateLimitBackend(redis_endpoint(good, connect_timeout_s=5), timeout_s=5)
        assert (await backend.admit("user-in-db-3", RateLimits(rpm=2), SMALL)).admitted
        await backend.close()
        admin: Any = redis.asyncio.Redis(port=server.port, password="pw-right", db=3)
        assert await admin.keys("tollway:rl:{user-in-db-3}:*")
        await admin.aclose()

        wrong = redis_endpoint(f"redis://:pw-wrong@127.0.0.1:{server.port}/3")
        with pytest.raises(RedisPipeError) as refused:
            await open_pipe(wrong, 5.0)
        assert "Redis refused AUTH" in str(refused.value) and "pw-wrong" not in str(refused.value)
    finally:
        await asyncio.to_thread(server.stop)


async def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    server = await asyncio.to_thread(start_redis_or_skip, ("--unixsocket", str(path)))
    try:
        backend = RedisRateLimitBackend(redis_endpoint(f"unix://{path}", connect_timeout_s=5), timeout_s=5)
        user = str(uuid.uuid4())
        decisions = [await backend.admit(user, RateLimits(rpm=3), SMALL) for _ in range(5)]
        assert [d.admitted for d in decisions] == [True, True, True, False, False]
        await backend.close()
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_dropped_connection_is_replaced_by_the_next_call(redis_server: RedisServer) -> None:
    backend = RedisRateLimitBackend(redis_endpoint(redis_server.url, connect_timeout_s=5), timeout_s=5)
    admin: Any = redis.asyncio.Redis.from_url(redis_server.url)
    user, limits = str(uuid.uuid4()), RateLimits(rpm=10)
    try:
        assert (await backend.admit(user, limits, SMALL)).requests_in_window == 1
        assert await admin.client_kill_filter(_type="normal", skipme=True) >= 1  # Redis drops the backend's socket
        await asyncio.sleep(0.1)
        again = await backend.admit(user, limits, SMALL)
        assert again.admitted and again.requests_in_window == 2  # counted once, on a new connection
    finally:
        await admin.aclose()
        await backend.close()


async def test_a_failed_call_is_rate_limit_backend_down() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n")
        writer.close()

    async with fake_redis(hang_up) as url:
        backend = RedisRateLimitBackend(redis_endpoint(url, connect_timeout_s=5), timeout_s=5)
        with pytest.raises(RateLimitBackendDown, match="Redis rate limiter unavailable"):
            await backend.admit("someone", RateLimits(rpm=1), SMALL)  # the scripts' load is answered by a hang-up
        await backend.close()


async def test_busy_polling_only_while_no_other_admitted_call_runs(redis_server: RedisServer) -> None:
    """Polling costs CPU time; it only pays when the instance is otherwise idle, so a call admitted here and not yet
    corrected (still running) turns it off for the next admission."""
    endpoint = redis_endpoint(redis_server.url, connect_timeout_s=5)
    backend = RedisRateLimitBackend(endpoint, timeout_s=5, busy_poll_s=1e-3)
    user, limits = str(uuid.uuid4()), RateLimits(rpm=10)
    try:
        assert backend._lone()
        first = await backend.admit(user, limits, SMALL)
        second = await backend.admit(user, limits, SMALL)
        assert first.reservation is not None and second.reservation is not None
        assert not backend._lone()
        backend.adjust(first.reservation, 5)
        assert not backend._lone()
        backend.adjust(second.reservation, 5)
        assert backend._lone()
    finally:
        await backend.close()


async def test_tls_verified_against_the_named_ca_and_refused_without_it(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    tls_port = free_port()
    tls = ("--tls-port", str(tls_port), "--tls-cert-file", str(certs["cert"]), "--tls-key-file", str(certs["key"]))
    options = (*tls, "--tls-ca-cert-file", str(certs["ca"]), "--tls-auth-clients", "no")
    server = await asyncio.to_thread(start_redis_or_skip, options)
    try:
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={certs['ca']}"
        backend = RedisRateLimitBackend(redis_endpoint(url, connect_timeout_s=5), timeout_s=5)
        user = str(uuid.uuid4())
        decisions = [await backend.admit(user, RateLimits(rpm=2), SMALL) for _ in range(3)]
        assert [d.admitted for d in decisions] == [True, True, False]
        await backend.close()

        with pytest.raises(RedisPipeError, match="could not connect to Redis: SSLCertVerificationError"):
            await open_pipe(redis_endpoint(f"rediss://127.0.0.1:{tls_port}/0", connect_timeout_s=5), 5.0)
        unverified = await open_pipe(redis_endpoint(f"rediss://127.0.0.1:{tls_port}?ssl_cert_reqs=none"), 5.0)
        assert await unverified.call("PING") == b"PONG"
        unverified.close()
    finally:
        await asyncio.to_thread(server.stop)
