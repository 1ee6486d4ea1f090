"""A throwaway redis-server started from the installed binary on a free loopback port, without persistence; it can
be killed (SIGKILL, as a crash) and started again on the same port.

Redis tests are mandatory when TOLLWAY_REQUIRE_REDIS=1 (CI sets it); elsewhere they are skipped, loudly, only when
the binary is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import free_port


def redis_required() -> bool:
    return os.environ.get("TOLLWAY_REQUIRE_REDIS", "").lower() in ("1", "true", "yes")


def redis_binary() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    def __init__(self, launcher: tuple[str, ...] = (), options: tuple[str, ...] = ()) -> None:
        """``launcher`` prefixes the command (the benchmark pins the server to a core with ``taskset``); ``options``
        are more redis-server options (a password, a Unix socket)."""
        binary = redis_binary()
        assert binary is not None
        self.binary = binary
        self.launcher = launcher
        self.options = options
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tollway-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            *self.launcher,
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--protected-mode", "no",
            "--loglevel", "warning",
            *self.options,
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self._answers_ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # up, with or without a password
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is saved, clients see their connections reset."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def freeze(self) -> None:
        """SIGSTOP: the server holds its connections and answers nothing, as a stalled host would."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_redis_or_skip(options: tuple[str, ...] = ()) -> RedisServer:
    """A running server; fails when Redis is required and missing, else skips with a warning."""
    if redis_binary() is None:
        if redis_required():
            pytest.fail("redis-server is missing but TOLLWAY_REQUIRE_REDIS=1")
        message = "redis-server not found: Redis tests are SKIPPED (CI runs them)"
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # shown in the summary, not turned into an error by filterwarnings
            warnings.warn(message, pytest.PytestWarning, stacklevel=1)
        pytest.skip(message)
    server = RedisServer(options=options)
    server.start()
    return server


def redis_server_fixture() -> Iterator[RedisServer]:
    """The body of a ``redis_server`` fixture: one server for the module, removed afterwards."""
    server = start_redis_or_skip()
    try:
        yield server
    finally:
        server.stop()
