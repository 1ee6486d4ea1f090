"""The only code that writes SSE bytes: chunk events, the closing ``[DONE]``, and the mid-stream error event; and
the named ``event: <type>`` events of the Responses API and of Anthropic's Messages API; and the streaming answer
that tells its service when it is over."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from tollway.domain import json_bytes
from tollway.domain.messages_output import error_body
from tollway.errors import ServiceUnavailable, TollwayError
from tollway.observability.context import current_request

DONE = b"data: [DONE]\n\n"


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` answer that calls ``ended`` once it is over, however it ended. Starlette never starts
    the body of a response whose client has already left, so a relay's own ``finally`` cannot be relied on to free
    what the relay was handed (a thread's lease, an opened upstream turn)."""

    def __init__(
        self, content: AsyncIterator[bytes], headers: Mapping[str, str], ended: Callable[[], None] | None
    ) -> None:
        super().__init__(content, headers=headers, media_type="text/event-stream")
        self._ended = ended

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._ended is not None:
                self._ended()


def data_event(payload: Any) -> bytes:
    return b"data: " + json_bytes.dumps(payload) + b"\n\n"


def drainable(stream: AsyncIterator[bytes], final: Callable[[], bytes]) -> AsyncIterator[bytes]:
    """The graceful-shutdown hook (SPEC §14.3, ``http/drain.py``): if the instance drains and ``stream`` is still
    running at the deadline, it is cancelled (its ``finally`` settles it as interrupted) and ``final()`` is sent as
    the last event. Outside a request served by the gateway, ``stream`` is returned as it is."""
    context = current_request()
    if context is None or context.drain is None:
        return stream
    guarded: AsyncIterator[bytes] = context.drain.guard(stream, final)
    return guarded


def shutdown_error() -> TollwayError:
    return ServiceUnavailable("The gateway is shutting down; the stream was interrupted. Retry the request.")


def chat_events(events: AsyncIterator[dict[str, Any] | TollwayError]) -> AsyncIterator[bytes]:
    """Encode chunks; an error ends the stream with ``data: {"error": …}`` and no ``[DONE]`` (SPEC §7.3)."""
    return drainable(_chat_events(events), lambda: data_event(shutdown_error().body()))


async def _chat_events(events: AsyncIterator[dict[str, Any] | TollwayError]) -> AsyncIterator[bytes]:
    async for event in events:
        if isinstance(event, TollwayError):
            yield data_event(event.body())
            return
        yield data_event(event)
    yield DONE


def named_events(
    events: AsyncIterator[dict[str, Any] | TollwayError],
    on_drain: Callable[[TollwayError], list[dict[str, Any]]] | None = None,
) -> AsyncIterator[bytes]:
    """Responses API events: ``event: <type>`` then ``data: <json>``, no ``[DONE]`` (SPEC §7.6). The service ends a
    failed stream with its own ``response.failed`` event, and a stream cut at shutdown with the events of
    ``on_drain``; an error object is written as OpenAI's ``error`` event."""

    def final() -> bytes:
        if on_drain is None:
            return _error_event(shutdown_error())
        return b"".join(_named_event(event) for event in on_drain(shutdown_error()))

    return drainable(_named_events(events), final)


def _named_event(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + json_bytes.dumps(event) + b"\n\n"


def _error_event(error: TollwayError) -> bytes:
    return b"event: error\ndata: " + orjson.dumps({"type": "error", **error.body()["error"]}) + b"\n\n"


async def _named_events(events: AsyncIterator[dict[str, Any] | TollwayError]) -> AsyncIterator[bytes]:
    async for event in events:
        if isinstance(event, TollwayError):
            yield _error_event(event)
            return
        yield _named_event(event)


def messages_events(events: AsyncIterator[dict[str, Any] | TollwayError]) -> AsyncIterator[bytes]:
    """Anthropic Messages events (SPEC §19): ``event: <type>`` then ``data: <json>``; an error (mid-stream, or at
    shutdown) is Anthropic's ``error`` event with its envelope, and ends the stream."""
    return drainable(_messages_events(events), lambda: _anthropic_error_event(shutdown_error()))


def _anthropic_error_event(error: TollwayError) -> bytes:
    return b"event: error\ndata: " + orjson.dumps(error_body(error)) + b"\n\n"


async def _messages_events(events: AsyncIterator[dict[str, Any] | TollwayError]) -> AsyncIterator[bytes]:
    async for event in events:
        if isinstance(event, TollwayError):
            yield _anthropic_error_event(event)
            return
        yield _named_event(event)
