"""Provider plug-ins by kind (implements ``domain.ports.providers.Providers``): a registry of import strings, so
adding a provider adds a row, not a branch."""

from __future__ import annotations

import importlib
from typing import Any

import aiohttp

from tollway.domain.catalog import ProviderKind
from tollway.domain.ports.providers import (
    ChatAdapter,
    EmbeddingAdapter,
    ImageAdapter,
    ModerationAdapter,
    ResponsesAdapter,
)
from tollway.providers.transport import Transport
from tollway.settings import Settings

ADAPTERS: dict[ProviderKind, str] = {
    ProviderKind.OPENAI: "tollway.providers.openai.adapter:OpenAIAdapter",
    ProviderKind.OPENAI_COMPATIBLE: "tollway.providers.openai.adapter:OpenAIAdapter",
    ProviderKind.ANTHROPIC: "tollway.providers.anthropic.adapter:AnthropicAdapter",
    ProviderKind.GEMINI: "tollway.providers.gemini.adapter:GeminiAdapter",
    ProviderKind.ASI1: "tollway.providers.asi1.adapter:ASI1Adapter",
}
# Kinds whose own Responses API serves /v1/responses; every other kind goes through its chat adapter (SPEC §7.6).
NATIVE_RESPONSES: dict[ProviderKind, str] = {
    ProviderKind.OPENAI: "tollway.providers.openai.responses:NativeResponses",
}

# Kinds that create embeddings and moderate (SPEC §19); asi1 offers neither, anthropic has no such API.
EMBEDDINGS: dict[ProviderKind, str] = {
    ProviderKind.OPENAI: "tollway.providers.openai.embeddings:OpenAIEmbeddings",
    ProviderKind.OPENAI_COMPATIBLE: "tollway.providers.openai.embeddings:OpenAIEmbeddings",
    ProviderKind.GEMINI: "tollway.providers.gemini.embeddings:GeminiEmbeddings",
}
MODERATIONS: dict[ProviderKind, str] = {
    ProviderKind.OPENAI: "tollway.providers.openai.moderations:OpenAIModerations",
    ProviderKind.OPENAI_COMPATIBLE: "tollway.providers.openai.moderations:OpenAIModerations",
}


def _load(target: str, transport: Transport) -> Any:
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)(transport)


class AdapterRegistry:
    def __init__(self, session: aiohttp.ClientSession, settings: Settings) -> None:
        self._transport = Transport(session, settings)
        self._loaded: dict[ProviderKind, ChatAdapter] = {}
        self._native: dict[ProviderKind, ResponsesAdapter] = {}
        self._embeddings: dict[ProviderKind, EmbeddingAdapter] = {}
        self._moderations: dict[ProviderKind, ModerationAdapter] = {}

    def supports(self, kind: ProviderKind) -> bool:
        return kind in ADAPTERS

    def get(self, kind: ProviderKind) -> ChatAdapter:
        adapter = self._loaded.get(kind)
        if adapter is None:
            adapter = self._loaded[kind] = _load(ADAPTERS[kind], self._transport)
        return adapter

    def images(self, kind: ProviderKind) -> ImageAdapter | None:
        """The kind's image-generation capability, or None when its adapter has none (SPEC §7.7)."""
        if not self.supports(kind):
            return None
        adapter = self.get(kind)
        return adapter if isinstance(adapter, ImageAdapter) else None

    def responses(self, kind: ProviderKind) -> ResponsesAdapter | None:
        """The kind's native Responses API, or None (SPEC §7.6)."""
        native = self._native.get(kind)
        if native is None and kind in NATIVE_RESPONSES:
            native = self._native[kind] = _load(NATIVE_RESPONSES[kind], self._transport)
        return native

    def embeddings(self, kind: ProviderKind) -> EmbeddingAdapter | None:
        """The kind's embeddings capability, or None (SPEC §19)."""
        adapter = self._embeddings.get(kind)
        if adapter is None and kind in EMBEDDINGS:
            adapter = self._embeddings[kind] = _load(EMBEDDINGS[kind], self._transport)
        return adapter

    def moderations(self, kind: ProviderKind) -> ModerationAdapter | None:
        """The kind's moderations capability, or None (SPEC §19)."""
        adapter = self._moderations.get(kind)
        if adapter is None and kind in MODERATIONS:
            adapter = self._moderations[kind] = _load(MODERATIONS[kind], self._transport)
        return adapter
