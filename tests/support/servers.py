"""Throwaway servers for tests: PostgreSQL started from the installed binaries on a free port, and Tollway itself
served by uvicorn on 127.0.0.1 in a background thread (real sockets, real lifespan)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from tollway.app import create_app
from tollway.serving import uvicorn_options
from tollway.settings import Settings
from tollway.storage.sql.migrate import upgrade


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for version in ("17", "16", "15", "14"):
        candidate = Path(f"/usr/lib/postgresql/{version}/bin/{name}")
        if candidate.exists():
            return str(candidate)
    return None


def postgres_available() -> bool:
    return _pg_bin("initdb") is not None and _pg_bin("pg_ctl") is not None


def _as_user_prefix() -> tuple[list[str], str | None]:
    """PostgreSQL refuses to run as root: drop to the ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return ["runuser", "-u", "nobody", "--"], "nobody"
    return ["runuser", "-u", "postgres", "--"], "postgres"


class PostgresServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tollway-pg-"))
        self.prefix, user = _as_user_prefix()
        if user is not None:
            shutil.chown(self.dir, user=user)
        self.data = self.dir / "data"
        self._counter = 0

    def start(self) -> None:
        initdb = _pg_bin("initdb")
        assert initdb
        subprocess.run(
            [*self.prefix, initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        self.resume()

    def resume(self) -> None:
        """Start the server on its data directory (again, after ``halt``)."""
        pg_ctl = _pg_bin("pg_ctl")
        assert pg_ctl
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
        subprocess.run(
            [*self.prefix, pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start"],
            check=True,
            capture_output=True,
        )

    def halt(self) -> None:
        """Stop the server as an operator would (fast shutdown: sessions are terminated), keeping its data."""
        pg_ctl = _pg_bin("pg_ctl")
        assert pg_ctl
        subprocess.run([*self.prefix, pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"], check=True)

    def pids(self) -> list[int]:
        """The postmaster and every backend and helper process it started."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def freeze(self) -> list[int]:
        """SIGSTOP every process of the server: connections stay open and nothing answers."""
        pids = self.pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    def thaw(self, pids: list[int]) -> None:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        pg_ctl = _pg_bin("pg_ctl")
        assert pg_ctl
        subprocess.run([*self.prefix, pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def new_database(self) -> str:
        self._counter += 1
        name = f"tollway_test_{self._counter}"
        psql = shutil.which("psql") or _pg_bin("psql")
        assert psql
        subprocess.run(
            [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", f"CREATE DATABASE {name}"],
            check=True,
            capture_output=True,
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


class GatewayServer:
    """Tollway served by uvicorn in a thread; ``url`` is ready once ``start`` returns."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = f"http://{settings.host}:{settings.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        asyncio.run(upgrade(self.settings))
        # Exactly as ``tollway serve`` runs it (uvloop, no proxy-header trust of its own, the same shutdown bound).
        config = uvicorn.Config(create_app(self.settings), **uvicorn_options(self.settings))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="tollway-gateway", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=20)


@contextmanager
def running_gateway(settings: Settings) -> Iterator[GatewayServer]:
    server = GatewayServer(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()
