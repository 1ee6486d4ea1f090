"""Instances for ``make bench-scale``: N ``tollway serve`` processes on one database, each on its own port with its
own data directory (its own settlement journal), sharing one secret key, one operator key and Redis, as
docs/deployment.md runs them."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.run import free_port, pinned

TOLLWAY = str(Path(sys.executable).with_name("tollway"))


@dataclass(frozen=True)
class Credentials:
    """One secret key and operator key for every instance of a run (a database copied from a seeded template keeps
    the secret key's fingerprint, so its instances must use the same key)."""

    admin_key: str = field(default_factory=lambda: "sk-admin_" + secrets.token_urlsafe(32))
    secret_key: str = field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())


@dataclass(frozen=True)
class Instance:
    base: str  # http://127.0.0.1:port
    pid: int

    def cpu_seconds(self) -> float:
        """User and system CPU the process has used so far, all its threads included."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(process: subprocess.Popen[bytes], port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tollway serve on port {port} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"tollway serve did not listen on {port} within {timeout} s")


@contextmanager
def instances(
    database_url: str,
    count: int,
    credentials: Credentials,
    redis_url: str | None = None,
    pin: int | None = None,
    spread: bool = False,
) -> Iterator[list[Instance]]:
    """``count`` instances. ``pin`` pins them all to one core (a lone instance on core 0 leaves core 1 to the
    upstream and wrk); ``spread`` pins instance i to core i mod the number of cores, as docs/deployment.md deploys
    several instances on one host: left to the kernel, instances migrate between the cores as they wake, and every
    request costs more CPU (docs/performance.md, "Many end users, 1, 2 and 4 instances")."""
    work = Path(tempfile.mkdtemp(prefix="tollway-scale-"))
    processes: list[subprocess.Popen[bytes]] = []
    ports = [free_port() for _ in range(count)]
    try:
        for index, port in enumerate(ports):
            data_dir = work / f"instance-{index}"
            data_dir.mkdir()
            env = {
                **os.environ,
                "TOLLWAY_DATABASE_URL": database_url.replace("{work}", str(work)),
                "TOLLWAY_ADMIN_KEY": credentials.admin_key,
                "TOLLWAY_SECRET_KEY": credentials.secret_key,
                "TOLLWAY_DATA_DIR": str(data_dir),
                "TOLLWAY_PORT": str(port),
                "TOLLWAY_EXPECTED_INSTANCES": str(count),
                "TOLLWAY_LOG_LEVEL": "warning",
            }
            if redis_url:
                env["TOLLWAY_REDIS_URL"] = redis_url
            argv = [TOLLWAY, "serve"]
            core = index % (os.cpu_count() or 1) if spread else pin
            processes.append(subprocess.Popen(pinned(core, argv) if core is not None else argv, env=env))
            _wait(processes[-1], port)  # one at a time: the first applies the migrations
        # taskset execs tollway: each process is the instance itself.
        yield [Instance(f"http://127.0.0.1:{port}", p.pid) for port, p in zip(ports, processes, strict=True)]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
