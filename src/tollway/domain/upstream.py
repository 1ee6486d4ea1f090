"""The values exchanged with upstream providers (the provider contract of ``domain/ports/providers.py``).

The hub format is OpenAI's chat shape: adapters take a validated ``ChatRequest`` and give back chat.completion and
chat.completion.chunk dicts plus the usage the provider reported (``None`` when it reported none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollway.domain.catalog import Candidate
from tollway.domain.chat_request import ChatRequest
from tollway.domain.embedding_request import EmbeddingRequest, ModerationRequest
from tollway.domain.image_request import ImageRequest
from tollway.domain.pricing import Usage
from tollway.domain.responses_request import ResponsesRequest


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
    # Provider state beside the hub body, for answers in Anthropic's shape (/v1/messages): the thinking and
    # redacted_thinking blocks as the provider returned them (with their signatures), and the stop sequence matched.
    thinking: tuple[dict[str, Any], ...] = ()
    stop_sequence: str | None = None


@dataclass(frozen=True, slots=True)
class StreamChunk:
    chunk: dict[str, Any]
    usage: Usage | None
    signature: str | None = None  # closes the thinking block being streamed (Anthropic signature_delta)
    redacted_thinking: str | None = None  # the data of a redacted_thinking block
    stop_sequence: str | None = None  # with the finish chunk, when the provider names the stop sequence matched


@dataclass(frozen=True, slots=True)
class ResponsesCall:
    """A Responses request sent to a provider's own Responses API, with the context Tollway rebuilt (SPEC §7.6)."""

    request: ResponsesRequest
    items: list[dict[str, Any]]  # the rebuilt context
    candidate: Candidate
    output_limit: int
    deadline: float  # loop.time() by which the whole call must end


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


# One embedding as a provider returned it: a list of floats, or OpenAI's base64 of the float32 little-endian vector.
Vector = list[float] | str


@dataclass(frozen=True, slots=True)
class EmbeddingCall:
    request: EmbeddingRequest
    candidate: Candidate
    deadline: float  # loop.time() by which the whole call must end


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    """The vectors in input order, and the prompt tokens the provider reported (None: it reported none, or a count
    that §9.4 does not accept; Tollway then estimates)."""

    vectors: tuple[Vector, ...]
    prompt_tokens: int | None


@dataclass(frozen=True, slots=True)
class ModerationCall:
    request: ModerationRequest
    candidate: Candidate
    deadline: float  # loop.time() by which the whole call must end


@dataclass(frozen=True, slots=True)
class ModerationResult:
    """OpenAI's moderation answer: its id (None when it sent none) and one result per input, passed through."""

    id: str | None
    results: list[dict[str, Any]]
