"""SPEC §14.1 on every route: a body is refused while it is read, so a 400 MiB body costs the gateway no more than
the limit. Each POST route of the served route table gets a 400 MiB chunked body, generated as it is sent (never
held by the test), against a ``tollway serve`` process whose resident set is sampled throughout."""

from __future__ import annotations

import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.invariants import assert_invariants
from tests.support.processes import GatewayProcess, StderrLines
from tollway.http.openapi.document import served
from tollway.http.routes import build_routes

MIB = 1 << 20
BODY_BYTES = 400 * MIB
CHUNK = b"[" * (256 * 1024)  # one chunk, sent again and again
GROWTH_LIMIT = 20 * MIB
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")


def post_routes() -> list[str]:
    return sorted({path for method, path in served(build_routes()) if method == "POST"})


def test_every_post_route_is_walked() -> None:
    routes = post_routes()
    # Management, inference, MCP, threads, console forms, the Stripe webhook: all come from the one table.
    for expected in (
        "/v1/chat/completions",
        "/v1/platforms/{pid}/api-keys",
        "/v1/mcp/{slug}",
        "/v1/responses",
        "/v1/stripe/webhook",
    ):
        assert expected in routes
    assert any(path.startswith("/console") for path in routes)


class RssSampler:
    """The peak ``VmRSS`` of a process, sampled every 2 ms on a thread."""

    def __init__(self, pid: int) -> None:
        self._path = Path(f"/proc/{pid}/status")
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        for line in self._path.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.002)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def stream_body(host: str, port: int, path: str, key: str | None) -> tuple[int | None, int]:
    """POST a 400 MiB chunked body, stopping when the server answers or closes; (status or None, bytes sent)."""
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    head += ["Transfer-Encoding: chunked", "Connection: close"]
    if key is not None:
        head.append(f"Authorization: Bearer {key}")
    piece = memoryview(b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n")
    sent, offset = 0, 0
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.setblocking(False)
        while sent < BODY_BYTES:
            readable, writable, _ = select.select([sock], [sock], [], 60)
            if readable:
                break  # an answer (or a close) before the whole body: the server stopped reading
            assert writable, f"{path}: the server neither reads the body nor answers"
            try:
                offset += sock.send(piece[offset:])
            except (BrokenPipeError, ConnectionResetError):
                break
            if offset == len(piece):
                sent, offset = sent + len(CHUNK), 0
        sock.setblocking(True)
        sock.settimeout(60)
        try:
            if sent >= BODY_BYTES:
                sock.sendall(b"0\r\n\r\n")
            answer = sock.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            return None, sent
    match = re.match(rb"HTTP/1\.1 (\d{3})", answer)
    return (int(match.group(1)) if match else None), sent


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("limits")
    settings = make_settings(tmp, f"sqlite:///{tmp / 'tollway.db'}", console=True)
    process = GatewayProcess(settings)
    lines = StderrLines(process)
    try:
        yield process
    finally:
        process.stop()
        lines.finish()
    assert_invariants(settings)


def _keys(gateway: GatewayProcess) -> tuple[str, str, str, str, str]:
    """(operator key, platform id, platform key, end-user id, end-user key) of a fresh tenant."""
    admin = gateway.settings.admin_key
    assert admin is not None
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {admin}"}, timeout=30) as client:
        created = client.post("/v1/admin/platforms", json={"name": "Limits"})
        assert created.status_code == 201, created.text
        pid, platform_key = created.json()["platform"]["id"], created.json()["api_key"]["raw_key"]
        user = client.post(
            f"/v1/platforms/{pid}/end-users",
            json={"external_id": "limits"},
            headers={"Authorization": f"Bearer {platform_key}"},
        )
        assert user.status_code == 201, user.text
    return admin, pid, platform_key, user.json()["id"], user.json()["api_key"]["raw_key"]


def test_a_400_mib_body_to_every_post_route_keeps_rss_growth_under_20_mib(gateway: GatewayProcess) -> None:
    admin, pid, platform_key, end_user_id, end_user_key = _keys(gateway)
    known = {"pid": pid, "id": end_user_id}  # real objects, so that the routes get as far as reading the body
    targets: list[tuple[str, str | None]] = []
    for template in post_routes():
        path = _PARAM.sub(lambda m: known.get(m.group(1), str(uuid.uuid4())), template)
        if template.startswith("/v1/admin"):
            key: str | None = admin
        elif template.startswith("/v1/me"):
            key = end_user_key
        elif template.startswith(("/console", "/v1/stripe")):
            key = None
        else:
            key = platform_key
        targets.append((path, key))
    host, port = gateway.settings.host, gateway.settings.port
    sampler = RssSampler(gateway.proc.pid)
    # A first small round warms every route (imports, caches), so that what follows measures bodies only.
    for path, key in targets:
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
        httpx.post(f"{gateway.url}{path}", content=b"{}", headers=headers, timeout=30)
    baseline = sampler.rss()
    answers: dict[str, tuple[int | None, int, int]] = {}
    with sampler:
        for path, key in targets:
            status, sent = stream_body(host, port, path, key)
            answers[path] = (status, sent, sampler.peak - baseline)
    grown = {path: answer for path, answer in answers.items() if answer[2] >= GROWTH_LIMIT}
    assert not grown, f"RSS grew by 20 MiB or more: {grown}"
    # Nothing accepted the body, nothing failed on it, and no route read it to the end (console pages send a caller
    # without a session to the sign-in page).
    wrong = {
        path: answer
        for path, answer in answers.items()
        if answer[0] is not None
        and not 400 <= answer[0] < 500
        and not (path.startswith("/console") and answer[0] == 303)
    }
    assert not wrong, wrong
    assert all(sent < BODY_BYTES for _, sent, _ in answers.values()), answers
    assert {status for status, _, _ in answers.values()} & {413}
