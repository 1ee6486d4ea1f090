"""One stream class for every adapter: SSE ``data:`` payloads in, hub chunks out, through a pure per-dialect
``EventTranslator`` (the translate modules hold those; this module only drives them over the network)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import aiohttp
import orjson

from tollway.domain.upstream import StreamChunk
from tollway.errors import UpstreamError, UpstreamTimeout
from tollway.providers.transport import Transport


class EventTranslator(Protocol):
    """Turns one upstream stream, event by event, into hub chunks; raises UpstreamError for error events."""

    @property
    def finished(self) -> bool:
        """The terminal event was seen (``[DONE]``, ``message_stop``): nothing more is read."""
        ...

    def feed(self, data: bytes) -> list[StreamChunk]:
        """The chunks one SSE ``data:`` payload yields (often none)."""
        ...

    def end(self) -> list[StreamChunk]:
        """The connection ended before ``finished``: the last chunks, or UpstreamError when the stream was cut."""
        ...


def event_json(data: bytes, slug: str) -> dict[str, Any]:
    """One SSE payload as a JSON object; anything else is an upstream error (SPEC §14.1)."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"Upstream provider '{slug}' sent an event that is not JSON.") from exc
    if not isinstance(event, dict):
        raise UpstreamError(f"Upstream provider '{slug}' sent a stream event that is not a JSON object.")
    return event


# What a translator may raise on JSON of an unexpected shape (a list where an object was due, ...): at this
# boundary that is a malformed answer, an upstream error, never a 500 (SPEC §14.1).
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)


def _answered(error: Exception, status: int, slug: str) -> UpstreamError | None:
    if isinstance(error, UpstreamError):
        if error.upstream_status is not None or isinstance(error, UpstreamTimeout):
            return None
        return UpstreamError(error.message, upstream_status=status)
    return UpstreamError(f"Upstream provider '{slug}' returned a malformed answer.", upstream_status=status)


@contextmanager
def answered(status: int, slug: str) -> Iterator[None]:
    """A failure inside a 2xx answer (JSON that is malformed, too large or of an unexpected shape) carries that
    status: the provider did answer, so it is not retried like a connection error but falls back (SPEC §14.2 lists
    what is retried). Timeouts and failures that already carry a status pass unchanged."""
    try:
        yield
    except (UpstreamError, *_SHAPE_ERRORS) as error:
        mapped = _answered(error, status, slug)
        if mapped is None:
            raise
        raise mapped from error


def cut(slug: str) -> UpstreamError:
    return UpstreamError(f"Upstream provider '{slug}' ended the stream early.")


class SSEChatStream:
    """A ChatStream over an open 2xx SSE response."""

    def __init__(
        self,
        transport: Transport,
        response: aiohttp.ClientResponse,
        slug: str,
        secret: str,
        translator: EventTranslator,
    ) -> None:
        self._response = response
        self._events = transport.sse_data(response, slug, secret)
        self._translator = translator
        self._slug = slug

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamChunk]:
        translator = self._translator
        async for data in self._events:
            try:
                chunks = translator.feed(data)
            except (UpstreamError, *_SHAPE_ERRORS) as error:
                mapped = _answered(error, self._response.status, self._slug)
                if mapped is None:
                    raise
                raise mapped from error
            for chunk in chunks:
                yield chunk
            if translator.finished:
                return
        for chunk in translator.end():
            yield chunk

    def close(self) -> None:
        self._response.close()
