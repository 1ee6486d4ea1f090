"""A small HTTP/1.1 server protocol on httptools: keep-alive, pipelining, delayed and chunk-streamed replies.

Just enough HTTP for the fake upstream. Replies go out strictly in request order; a reply with no delay is
written in one ``write`` straight from ``data_received`` (the fast path the benchmark depends on).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import cast

import httptools

_log = logging.getLogger(__name__)
_PIPELINE_LIMIT = 64  # queued requests per connection before we stop reading from it
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_INTERNAL_ERROR_BODY = (
    b'{"error":{"message":"fake upstream crashed","type":"server_error","code":"server_error","param":null}}'
)


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request; header names are lower-cased (repeated headers joined with ", ")."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool
    http_11: bool


@dataclass(frozen=True, slots=True)
class Reply:
    """How to answer one request. ``status=None`` sends nothing and closes the connection."""

    status: int | None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    events: tuple[bytes, ...] | None = None  # a streamed body (chunked); one chunk per item
    delay_s: float = 0.0  # before the status line
    event_delay_s: float = 0.0  # between streamed items
    cut: bool = False  # close the connection after the last item without ending the body

    @property
    def immediate(self) -> bool:
        return self.delay_s <= 0 and (self.events is None or self.event_delay_s <= 0)


Handler = Callable[[Request], Reply]


class HttpConnection(asyncio.Protocol):
    """One client connection; ``connections`` is the server's live set, used to close them all at shutdown."""

    def __init__(self, handler: Handler, connections: set[HttpConnection]) -> None:
        self._handler = handler
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = bytearray()
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._pending: deque[Request] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading = True
        self._closed = False
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # set once fully closed

    @property
    def busy(self) -> bool:
        """A slow reply (a delayed answer or a paced stream) is being written on this connection."""
        return self._worker is not None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._connections.discard(self)
        if self._worker is None:
            self._set_lost()
        else:  # `lost` resolves once the in-flight reply has unwound, so shutdown leaves no pending task
            self._worker.add_done_callback(lambda _: self._set_lost())
            self._worker.cancel()

    def _set_lost(self) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._close()
        except httptools.HttpParserError:
            self._write(_BAD_REQUEST)
            self._close()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = bytearray()
        self._headers = {}
        self._body = bytearray()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        # 100-continue only when it cannot interleave with an earlier reply still being written.
        if self._headers.get("expect", "").lower() == "100-continue" and self._worker is None and not self._pending:
            self._write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        if self._closed:
            return
        request = Request(
            method=self._parser.get_method().decode("ascii"),
            target=self._url.decode("latin-1"),
            headers=self._headers,
            body=bytes(self._body),
            keep_alive=self._parser.should_keep_alive(),
            http_11=self._parser.get_http_version() == "1.1",
        )
        if self._worker is not None:
            self._pending.append(request)
            if len(self._pending) >= _PIPELINE_LIMIT and self._reading and self._transport is not None:
                self._reading = False
                self._transport.pause_reading()
            return
        reply = self._handle(request)
        if reply.immediate:
            self._send_now(request, reply)
        else:
            self._worker = asyncio.get_running_loop().create_task(self._serve(request, reply))

    # replies

    def _handle(self, request: Request) -> Reply:
        try:
            return self._handler(request)
        except Exception:
            _log.exception("fake upstream handler failed on %s %s", request.method, request.target)
            return Reply(500, (("content-type", "application/json"),), _INTERNAL_ERROR_BODY)

    def _send_now(self, request: Request, reply: Reply) -> None:
        if reply.status is None:
            self._close()
            return
        head, close = _head(request, reply)
        if reply.events is None:
            self._write(head + reply.body)
        else:
            framed = [_frame(event, request.http_11) for event in reply.events]
            if not reply.cut and request.http_11:
                framed.append(b"0\r\n\r\n")
            self._write(head + b"".join(framed))
        if close or reply.cut:
            self._close()

    async def _serve(self, request: Request, reply: Reply) -> None:
        """Answer queued requests in order; runs while a slow reply is in flight, then hands back to the fast path."""
        try:
            while True:
                await self._send_slowly(request, reply)
                if self._closed or not self._pending:
                    return
                request = self._pending.popleft()
                if not self._reading and self._transport is not None:
                    self._reading = True
                    self._transport.resume_reading()
                reply = self._handle(request)
        finally:
            self._worker = None

    async def _send_slowly(self, request: Request, reply: Reply) -> None:
        if reply.delay_s > 0:
            await asyncio.sleep(reply.delay_s)
        if reply.events is None or reply.event_delay_s <= 0:
            self._send_now(request, reply)
            return
        head, close = _head(request, reply)
        self._write(head)
        for i, event in enumerate(reply.events):
            if i:
                await asyncio.sleep(reply.event_delay_s)
            await self._writable.wait()
            self._write(_frame(event, request.http_11))
        if not reply.cut and request.http_11:
            self._write(b"0\r\n\r\n")
        if close or reply.cut:
            self._close()

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._closed:
            self._transport.write(data)

    def _close(self) -> None:
        """Close after flushing what is written (a FIN, so a cut stream reads as an incomplete body)."""
        self._closed = True
        self._pending.clear()
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection now (server shutdown)."""
        self._closed = True
        if self._transport is not None:
            self._transport.abort()


def _head(request: Request, reply: Reply) -> tuple[bytes, bool]:
    """The status line and headers, and whether the connection must close after this reply."""
    assert reply.status is not None
    streamed = reply.events is not None
    close = not request.keep_alive or (streamed and not request.http_11)  # HTTP/1.0 streams end by closing
    lines = [f"HTTP/1.1 {reply.status} {_reason(reply.status)}"]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    if not streamed:
        lines.append(f"content-length: {len(reply.body)}")
    elif request.http_11:
        lines.append("transfer-encoding: chunked")
    if close:
        lines.append("connection: close")
    elif not request.http_11:
        lines.append("connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), close


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _frame(event: bytes, chunked: bool) -> bytes:
    if not chunked or not event:  # an empty chunk would end the body
        return event
    return b"%x\r\n%s\r\n" % (len(event), event)
