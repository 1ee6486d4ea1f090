"""The ASI:One adapter (kind asi1): the OpenAI dialect at ``{base_url}/chat/completions`` with ``max_tokens``,
``x-session-id`` and the ASI:One request extensions forwarded, and responses normalised (SPEC §7.5)."""

from __future__ import annotations

from typing import Any

from tollway.domain.catalog import Candidate
from tollway.domain.image_request import ImageRequest
from tollway.domain.upstream import ChatResult, ImageCall, ImageResult, UpstreamCall
from tollway.errors import UnsupportedParameter
from tollway.providers.asi1 import images, translate
from tollway.providers.openai.adapter import OpenAIAdapter
from tollway.providers.streaming import EventTranslator


class ASI1Adapter(OpenAIAdapter):
    def _headers(self, call: UpstreamCall) -> dict[str, str]:
        return {**super()._headers(call), **translate.session_headers(call.session_id)}

    def _result(self, raw: dict[str, Any], slug: str) -> ChatResult:
        return translate.completion_result(raw, slug)

    def _translator(self, slug: str) -> EventTranslator:
        return translate.ChunkTranslator(slug)

    # Image generation at ``{base_url}/image/generate`` in ASI:One's own shape (SPEC §7.7).

    def image_refusal(self, request: ImageRequest, candidate: Candidate) -> UnsupportedParameter | None:
        return images.refusal(request, candidate)

    async def generate_images(self, call: ImageCall) -> ImageResult:
        return await images.generate(self._transport, call)
