"""Tollway as real OS processes (``tollway serve``), for multi-process money tests and crash tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from tests.support.canary import WATCH
from tollway.settings import Settings


def gateway_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLWAY_")}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"TOLLWAY_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class GatewayProcess:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = f"http://{settings.host}:{settings.port}"
        tollway = Path(sys.executable).with_name("tollway")
        self.proc = subprocess.Popen([str(tollway), "serve"], env=gateway_env(settings), stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"tollway serve exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}"
                )
            with socket.socket() as sock:
                if sock.connect_ex((settings.host, settings.port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("tollway serve did not start listening")
            time.sleep(0.05)

    def kill(self) -> None:
        """kill -9: no shutdown hooks, holds in flight stay as they are."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close_stderr()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_stderr()

    def _close_stderr(self) -> None:
        """The process's log lines (JSON, on stderr) pass the suite's canary check before the pipe closes."""
        if self.proc.stderr is None or self.proc.stderr.closed:
            return
        with contextlib.suppress(OSError, ValueError):
            WATCH.check("tollway serve stderr", self.proc.stderr.read().decode(errors="replace"))
        self.proc.stderr.close()


class StderrLines:
    """Reads a gateway process's stderr while it runs (an outage logs tracebacks: a full pipe would stall the
    process), keeps the lines for assertions, and passes them to the canary check."""

    def __init__(self, process: GatewayProcess) -> None:
        self.lines: list[str] = []
        stream = process.proc.stderr
        assert stream is not None
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            self.lines.append(line.decode(errors="replace"))

    def finish(self) -> str:
        self._thread.join(timeout=10)
        text = "".join(self.lines)
        WATCH.check("tollway serve stderr", text)
        return text
