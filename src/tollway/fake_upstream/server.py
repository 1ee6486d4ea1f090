"""The built-in fake upstream LLM provider: a real HTTP server speaking the chat wire formats of OpenAI, ASI:One
(new and old shapes), Anthropic and Gemini.

Run it in a test's event loop (``start_fake_upstream``), in a thread for sync tests (``FakeUpstreamThread``), or
as ``tollway fake-upstream`` (``main``). Behaviour is chosen by the request's model string; see fake_scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from collections.abc import Callable
from types import TracebackType

from tollway.fake_upstream.http import HttpConnection
from tollway.fake_upstream.routes import FakeRoutes, RecordedRequest, RequestLog

DEFAULT_PORT = 9090  # the port `tollway fake-upstream` and `tollway demo` default to
# The path a provider's base_url needs, per wire format, on top of the server's root URL.
DIALECT_PATHS = {"openai": "/v1", "asi1": "/asi1/v1", "asi1-old": "/asi1-old/v1", "anthropic": "", "gemini": ""}
_CLOSE_TIMEOUT_S = 5.0


class FakeUpstream:
    """A fake upstream serving on the running event loop; build it with ``start_fake_upstream``."""

    def __init__(
        self, server: asyncio.Server, connections: set[HttpConnection], log: RequestLog, host: str, port: int
    ) -> None:
        self._server = server
        self._connections = connections
        self._log = log
        self.host = host
        self.port = port

    @property
    def root_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://host:port/v1``."""
        return self.root_url + "/v1"

    def dialect_base_url(self, dialect: str) -> str:
        """The base URL for a provider speaking ``dialect`` (a key of DIALECT_PATHS)."""
        return self.root_url + DIALECT_PATHS[dialect]

    @property
    def requests(self) -> list[RecordedRequest]:
        """The recorded requests (the last 1000), oldest first."""
        return self._log.requests

    @property
    def request_count(self) -> int:
        """How many requests were recorded since start or the last reset, including those no longer kept."""
        return self._log.count

    @property
    def replies_in_flight(self) -> int:
        """Connections on which a slow reply is still being written (a client that hung up is no longer one)."""
        return sum(1 for connection in self._connections if connection.busy)

    def reset(self) -> None:
        """Forget recorded requests and the ``times=K`` failure counters."""
        self._log.reset()

    async def close(self) -> None:
        """Stop listening and drop every open connection; idempotent."""
        self._server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.abort()
        if connections:
            await asyncio.wait([c.lost for c in connections], timeout=_CLOSE_TIMEOUT_S)
        await self._server.wait_closed()

    async def __aenter__(self) -> FakeUpstream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def start_fake_upstream(host: str = "127.0.0.1", port: int = 0) -> FakeUpstream:
    """Start serving on host:port (0 picks a free port) on the running event loop."""
    loop = asyncio.get_running_loop()
    log = RequestLog()
    routes = FakeRoutes(log)
    connections: set[HttpConnection] = set()
    server = await loop.create_server(
        lambda: HttpConnection(routes, connections), host, port, reuse_address=True, backlog=1024
    )
    bound_port: int = server.sockets[0].getsockname()[1]
    return FakeUpstream(server, connections, log, host, bound_port)


class FakeUpstreamThread:
    """A fake upstream on its own thread and event loop, for sync code: ``with FakeUpstreamThread() as fake:``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._upstream: FakeUpstream | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start the thread and wait until the server listens; re-raises a failure to bind."""
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def close(self) -> None:
        """Stop the server and join the thread; idempotent."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join()
        self._loop = None

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                runner.run(self._serve())
        except BaseException as error:  # reported to start(); a thread has nowhere else to raise
            self._error = self._error or error
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        upstream = await start_fake_upstream(self._host, self._port)
        self._upstream = upstream
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await upstream.close()

    @property
    def _running(self) -> FakeUpstream:
        if self._upstream is None:
            raise RuntimeError("FakeUpstreamThread is not started")
        return self._upstream

    @property
    def port(self) -> int:
        return self._running.port

    @property
    def base_url(self) -> str:
        return self._running.base_url

    def dialect_base_url(self, dialect: str) -> str:
        return self._running.dialect_base_url(dialect)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._running.requests

    @property
    def request_count(self) -> int:
        return self._running.request_count

    @property
    def replies_in_flight(self) -> int:
        """Counted on the server's own loop, where its set of connections changes."""
        upstream, loop = self._running, self._loop
        assert loop is not None

        async def count() -> int:
            return upstream.replies_in_flight

        return asyncio.run_coroutine_threadsafe(count(), loop).result(timeout=5)

    def reset(self) -> None:
        self._running.reset()

    def __enter__(self) -> FakeUpstreamThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop where it is installed, else asyncio's."""
    try:
        import uvloop  # optional dependency (not on Windows)
    except ImportError:
        return asyncio.new_event_loop
    new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return new_loop


def main(argv: list[str] | None = None) -> None:
    """``tollway fake-upstream [--host H] [--port P]``: serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="tollway fake-upstream", description="Serve the fake upstream LLM provider.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port, 0 for any free one (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(_serve_until_signal(args.host, args.port))


async def _serve_until_signal(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        upstream = await start_fake_upstream(host, port)
    except OSError as error:
        raise SystemExit(f"fake upstream: cannot listen on {host}:{port}: {error}") from None
    print(f"fake upstream listening on {upstream.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await upstream.close()


if __name__ == "__main__":
    main()
