"""Provider plug-ins by kind: a registry of import strings, so adding a provider adds a row, not a branch."""

from __future__ import annotations

import importlib
from typing import Any

import aiohttp

from tollway.domain.catalog import ProviderKind
from tollway.providers.base import ChatAdapter, ImageAdapter
from tollway.providers.transport import Transport
from tollway.settings import Settings

ADAPTERS: dict[ProviderKind, str] = {
    ProviderKind.OPENAI: "tollway.providers.openai.adapter:OpenAIAdapter",
    ProviderKind.OPENAI_COMPATIBLE: "tollway.providers.openai.adapter:OpenAIAdapter",
    ProviderKind.ANTHROPIC: "tollway.providers.anthropic.adapter:AnthropicAdapter",
    ProviderKind.GEMINI: "tollway.providers.gemini.adapter:GeminiAdapter",
    ProviderKind.ASI1: "tollway.providers.asi1.adapter:ASI1Adapter",
}


class AdapterRegistry:
    def __init__(self, session: aiohttp.ClientSession, settings: Settings) -> None:
        self._transport = Transport(session, settings)
        self._loaded: dict[ProviderKind, ChatAdapter] = {}

    def supports(self, kind: ProviderKind) -> bool:
        return kind in ADAPTERS

    def get(self, kind: ProviderKind) -> ChatAdapter:
        adapter = self._loaded.get(kind)
        if adapter is None:
            module_name, _, class_name = ADAPTERS[kind].partition(":")
            factory: Any = getattr(importlib.import_module(module_name), class_name)
            adapter = factory(self._transport)
            self._loaded[kind] = adapter
        return adapter

    def images(self, kind: ProviderKind) -> ImageAdapter | None:
        """The kind's image-generation capability, or None when its adapter has none (SPEC §7.7)."""
        if not self.supports(kind):
            return None
        adapter = self.get(kind)
        return adapter if isinstance(adapter, ImageAdapter) else None
