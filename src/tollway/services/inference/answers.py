"""What an inference use case hands to the HTTP layer: a JSON body, or events to stream, with the serving provider
and the headers of the call (rate limits, clamp)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from tollway.errors import TollwayError


@dataclass(slots=True)
class Completion:
    body: dict[str, Any]
    provider_slug: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class StreamedCompletion:
    events: AsyncIterator[dict[str, Any] | TollwayError]
    provider_slug: str
    headers: dict[str, str] = field(default_factory=dict)
    # The closing events of a stream cut by a graceful shutdown (Responses: ``response.failed``); None: an error.
    on_drain: Callable[[TollwayError], list[dict[str, Any]]] | None = None
    # Called by the HTTP layer once the response is over, however it ended: also when ``events`` never started (its
    # client left before the first event), where no ``finally`` of the relay runs. Frees what such a relay holds.
    ended: Callable[[], None] | None = None
