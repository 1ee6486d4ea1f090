"""The only code that writes SSE bytes: chunk events, the closing ``[DONE]``, and the mid-stream error event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from tollway.errors import TollwayError

DONE = b"data: [DONE]\n\n"


def data_event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def chat_events(events: AsyncIterator[dict[str, Any] | TollwayError]) -> AsyncIterator[bytes]:
    """Encode chunks; an error ends the stream with ``data: {"error": …}`` and no ``[DONE]`` (SPEC §7.3)."""
    async for event in events:
        if isinstance(event, TollwayError):
            yield data_event(event.body())
            return
        yield data_event(event)
    yield DONE
