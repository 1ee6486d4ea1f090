"""The OpenAI-dialect adapter (kinds ``openai`` and ``openai_compatible``; asi1 builds on it): the only module here
on the network. ``POST {base_url}/chat/completions`` with ``Authorization: Bearer`` (SPEC §7.4)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tollway.domain.catalog import Candidate
from tollway.domain.chat_request import ChatRequest
from tollway.domain.image_request import ImageRequest
from tollway.domain.upstream import ChatResult, ImageCall, ImageResult, UpstreamCall
from tollway.errors import UnsupportedParameter
from tollway.providers import capabilities
from tollway.providers.openai import images, translate
from tollway.providers.streaming import EventTranslator, SSEChatStream, answered
from tollway.providers.transport import Transport


class OpenAIAdapter:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def refusal(self, request: ChatRequest, candidate: Candidate) -> UnsupportedParameter | None:
        return capabilities.refusal(request, candidate)

    # Hooks for dialects built on this one (asi1).

    def _headers(self, call: UpstreamCall) -> dict[str, str]:
        return {"Authorization": f"Bearer {call.candidate.api_key}", "Content-Type": "application/json"}

    def _payload(self, call: UpstreamCall) -> dict[str, Any]:
        return translate.build_payload(call.request, call.candidate, call.output_limit)

    def _result(self, raw: dict[str, Any], slug: str) -> ChatResult:
        choices, usage = translate.normalise_completion(raw, slug)
        return ChatResult({"choices": choices}, usage)

    def _translator(self, slug: str) -> EventTranslator:
        return translate.ChunkTranslator(slug)

    # The network.

    async def _open(self, call: UpstreamCall) -> aiohttp.ClientResponse:
        candidate = call.candidate
        return await self._transport.open(
            candidate.provider.slug,
            candidate.provider.base_url + "/chat/completions",
            self._payload(call),
            self._headers(call),
            candidate.api_key,
            call.deadline,
            read_error=translate.read_error,
        )

    async def chat(self, call: UpstreamCall) -> ChatResult:
        response = await self._open(call)
        slug = call.candidate.provider.slug
        with answered(response.status, slug):
            raw = await self._transport.read_json(response, call.deadline, slug, call.candidate.api_key)
            return self._result(raw, slug)

    async def chat_stream(self, call: UpstreamCall) -> SSEChatStream:
        response = await self._open(call)
        slug = call.candidate.provider.slug
        return SSEChatStream(self._transport, response, slug, call.candidate.api_key, self._translator(slug))

    # Image generation (SPEC §7.7): the ImageAdapter capability; the wire code lives in ``images.py``.

    def image_refusal(self, request: ImageRequest, candidate: Candidate) -> UnsupportedParameter | None:
        return None  # n, quality and style are all forwarded to openai and openai_compatible

    async def generate_images(self, call: ImageCall) -> ImageResult:
        return await images.generate(self._transport, call)
