"""The provider plug-in contract: a small Protocol every adapter implements, and the values it exchanges.

The hub format is OpenAI's chat shape: adapters take a validated ``ChatRequest`` and give back chat.completion
and chat.completion.chunk dicts plus the usage the provider reported (``None`` when it reported none).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tollway.domain.catalog import Candidate
from tollway.domain.chat_request import ChatRequest
from tollway.domain.image_request import ImageRequest
from tollway.domain.pricing import Usage
from tollway.errors import UnsupportedParameter


class InvalidForProvider(UnsupportedParameter):
    """A request this provider's format cannot express, such as tool-call arguments that are not a JSON object for
    Anthropic or Gemini (SPEC §7.4): 400 ``invalid_request`` at the offending path. It subclasses
    UnsupportedParameter so that ``refusal()`` can report it: the row is then dropped like any ✗, and the error
    reaches the client only when no candidate that can take the request remains (SPEC §8 step 3b)."""

    code = "invalid_request"


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    request: ChatRequest
    candidate: Candidate
    output_limit: int
    request_id: str
    session_id: str | None
    deadline: float  # loop.time() by which the whole call must end


@dataclass(frozen=True, slots=True)
class ChatResult:
    body: dict[str, Any]
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class StreamChunk:
    chunk: dict[str, Any]
    usage: Usage | None


class ChatStream(Protocol):
    def __aiter__(self) -> AsyncIterator[StreamChunk]: ...

    def close(self) -> None:
        """Close the upstream connection; synchronous so that it also works inside a cancelled ``finally``."""
        ...


class ChatAdapter(Protocol):
    def refusal(self, request: ChatRequest, candidate: Candidate) -> UnsupportedParameter | None:
        """The parameter this provider cannot honour or translate (SPEC §7.4), or None."""
        ...

    async def chat(self, call: UpstreamCall) -> ChatResult: ...

    async def chat_stream(self, call: UpstreamCall) -> ChatStream:
        """Open the stream; returns once the upstream answered with a success status."""
        ...


# -- optional capability: image generation (SPEC §7.7) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageCall:
    request: ImageRequest
    candidate: Candidate
    deadline: float  # loop.time() by which the whole call must end


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One image as the provider returned it: exactly one of ``url`` (hosted or data URL) and ``b64_json``."""

    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class ImageResult:
    images: tuple[GeneratedImage, ...]


@runtime_checkable
class ImageAdapter(Protocol):
    """Implemented by the adapters whose kind generates images (openai, openai_compatible, asi1)."""

    def image_refusal(self, request: ImageRequest, candidate: Candidate) -> UnsupportedParameter | None:
        """The image parameter this provider cannot honour (SPEC §7.7), or None."""
        ...

    async def generate_images(self, call: ImageCall) -> ImageResult: ...
