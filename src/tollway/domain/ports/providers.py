"""The provider contract (STYLE.md: TensorZero's provider trait): a small Protocol every adapter implements, optional
capability Protocols (images, a native Responses API), and the registry that hands them out by provider kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from tollway.domain.catalog import Candidate, ProviderKind
from tollway.domain.chat_request import ChatRequest
from tollway.domain.embedding_request import EmbeddingRequest
from tollway.domain.image_request import ImageRequest
from tollway.domain.upstream import (
    ChatResult,
    EmbeddingCall,
    EmbeddingResult,
    ImageCall,
    ImageResult,
    ModerationCall,
    ModerationResult,
    ResponsesCall,
    StreamChunk,
    UpstreamCall,
)
from tollway.errors import UnsupportedParameter


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


@runtime_checkable
class ImageAdapter(Protocol):
    """Implemented by the adapters whose kind generates images (openai, openai_compatible, asi1), SPEC §7.7."""

    def image_refusal(self, request: ImageRequest, candidate: Candidate) -> UnsupportedParameter | None:
        """The image parameter this provider cannot honour (SPEC §7.7), or None."""
        ...

    async def generate_images(self, call: ImageCall) -> ImageResult: ...


class EmbeddingAdapter(Protocol):
    """Implemented for the kinds that create embeddings (openai, openai_compatible, gemini), SPEC §19."""

    def embedding_refusal(self, request: EmbeddingRequest, candidate: Candidate) -> UnsupportedParameter | None:
        """The embeddings parameter this provider cannot honour (token arrays for gemini), or None."""
        ...

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult: ...


class ModerationAdapter(Protocol):
    """Implemented for the kinds that moderate (openai, openai_compatible), SPEC §19."""

    async def moderate(self, call: ModerationCall) -> ModerationResult: ...


class ResponsesAdapter(Protocol):
    """A provider's own Responses API (kind ``openai``), answered in the hub's chat shapes (SPEC §7.6)."""

    async def create(self, call: ResponsesCall) -> ChatResult: ...

    async def stream(self, call: ResponsesCall) -> ChatStream: ...


class Providers(Protocol):
    """Adapters by provider kind."""

    def supports(self, kind: ProviderKind) -> bool: ...

    def get(self, kind: ProviderKind) -> ChatAdapter: ...

    def images(self, kind: ProviderKind) -> ImageAdapter | None:
        """The kind's image-generation capability, or None when its adapter has none."""
        ...

    def responses(self, kind: ProviderKind) -> ResponsesAdapter | None:
        """The kind's native Responses API, or None: its calls then go through its chat adapter."""
        ...

    def embeddings(self, kind: ProviderKind) -> EmbeddingAdapter | None:
        """The kind's embeddings capability, or None when it has none (anthropic, asi1)."""
        ...

    def moderations(self, kind: ProviderKind) -> ModerationAdapter | None:
        """The kind's moderations capability, or None when it has none."""
        ...
