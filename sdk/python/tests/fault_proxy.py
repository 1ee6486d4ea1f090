"""A reverse proxy in front of a live Tollway that fails chosen requests the way real networks and servers do: it
answers 503 or 429 with ``Retry-After`` instead of forwarding (``answer``), forwards and then answers an error instead
of the real answer (``lose-answer``: the request took effect but the client never heard), or drops the connection
before (``drop``) or after (``forward-drop``) forwarding. It records every request it receives."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import httpx
import orjson

Mode = Literal["answer", "lose-answer", "drop", "forward-drop"]
_HOP_BY_HOP = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive", "host"})


@dataclass
class Fault:
    method: str
    path_suffix: str
    mode: Mode
    status: int = 503
    code: str = "service_unavailable"
    retry_after: str | None = "1"
    times: int = 1


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FaultProxy:
    upstream: str
    seen: list[Seen] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=self.upstream, timeout=30)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fail(self, method: str, path_suffix: str, mode: Mode, **options: object) -> None:
        """Fail the next ``times`` requests of ``method`` whose path ends with ``path_suffix``."""
        with self._lock:
            self.faults.append(Fault(method, path_suffix, mode, **options))  # type: ignore[arg-type]

    def requests_to(self, method: str, path_suffix: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.split("?")[0].endswith(path_suffix)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method == method and path.split("?")[0].endswith(fault.path_suffix) and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _relay(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                with proxy._lock:
                    proxy.seen.append(Seen(self.command, self.path, headers, body))
                fault = proxy._take(self.command, self.path)
                if fault is not None and fault.mode == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault is None or fault.mode in ("lose-answer", "forward-drop"):
                    forwarded = {k: v for k, v in headers.items() if k not in _HOP_BY_HOP}
                    answer = proxy._http.request(self.command, self.path, headers=forwarded, content=body)
                    if fault is None:
                        self._send(answer.status_code, answer.headers.multi_items(), answer.content)
                        return
                    if fault.mode == "forward-drop":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                error = {
                    "error": {
                        "message": "Injected by the test proxy.",
                        "type": "server_error",
                        "code": fault.code,
                        "param": None,
                    }
                }
                extra = [("Retry-After", fault.retry_after)] if fault.retry_after is not None else []
                extra.append(("x-request-id", "req_" + "0" * 32))
                self._send(fault.status, [("content-type", "application/json"), *extra], orjson.dumps(error))

            def _send(self, status: int, headers: list[tuple[str, str]], content: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _relay  # noqa: N815 (http.server's handler names)

        return Handler
