"""Providers, priced model rows and the routing candidates built from them (SPEC §4.1, §4.2, §7.1, §8)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tollway.domain.pricing import Prices


class ProviderKind(StrEnum):
    OPENAI = "openai"
    OPENAI_COMPATIBLE = "openai_compatible"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    ASI1 = "asi1"


DEFAULT_BASE_URLS: dict[ProviderKind, str | None] = {
    ProviderKind.OPENAI: "https://api.openai.com/v1",
    ProviderKind.OPENAI_COMPATIBLE: None,
    ProviderKind.ANTHROPIC: "https://api.anthropic.com",
    ProviderKind.GEMINI: "https://generativelanguage.googleapis.com",
    ProviderKind.ASI1: "https://api.asi1.ai/v1",
}


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    slug: str
    name: str
    kind: ProviderKind
    base_url: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ModelRow:
    id: str
    slug: str
    provider_id: str
    upstream_model: str
    prices: Prices
    price_per_image_nanos: int | None
    priority: int
    min_output_tokens: int | None
    max_output_tokens: int
    context_window: int | None
    is_active: bool
    created_at: datetime
    updated_at: datetime
    price_per_request_nanos: int | None = None  # a fixed price per call (moderations, §19); None → no such price

    @property
    def min_output(self) -> int:
        return self.min_output_tokens or 1


@dataclass(frozen=True, slots=True)
class Candidate:
    """A usable model row for one platform: row and provider active, with that platform's provider key."""

    model: ModelRow
    provider: Provider
    api_key: str

    def __repr__(self) -> str:  # never print the provider key
        return f"Candidate(model={self.model.slug!r}, provider={self.provider.slug!r})"
