"""The Gemini adapter (kind gemini): ``POST {base_url}/v1beta/models/{model}:generateContent`` (streams:
``:streamGenerateContent?alt=sse``) with ``x-goog-api-key``, never the key in the URL; the only module here on
the network (SPEC §7.4)."""

from __future__ import annotations

import aiohttp

from tollway.domain.catalog import Candidate
from tollway.domain.chat_request import ChatRequest
from tollway.domain.upstream import ChatResult, UpstreamCall
from tollway.errors import UnsupportedParameter
from tollway.providers import capabilities
from tollway.providers.gemini import translate, wire
from tollway.providers.gemini.events import EventTranslator
from tollway.providers.streaming import SSEChatStream, answered
from tollway.providers.transport import Transport


class GeminiAdapter:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def refusal(self, request: ChatRequest, candidate: Candidate) -> UnsupportedParameter | None:
        return capabilities.refusal(request, candidate)

    async def _open(self, call: UpstreamCall) -> aiohttp.ClientResponse:
        candidate = call.candidate
        url = candidate.provider.base_url + wire.model_path(candidate.model.upstream_model, call.request.stream)
        headers = {"x-goog-api-key": candidate.api_key, "Content-Type": "application/json"}
        payload = translate.build_payload(call.request, call.output_limit)
        return await self._transport.open(
            candidate.provider.slug,
            url,
            payload,
            headers,
            candidate.api_key,
            call.deadline,
            read_error=translate.read_error,
        )

    async def chat(self, call: UpstreamCall) -> ChatResult:
        response = await self._open(call)
        slug = call.candidate.provider.slug
        with answered(response.status, slug):
            raw = await self._transport.read_json(response, call.deadline, slug, call.candidate.api_key)
            return translate.completion_result(raw, slug)

    async def chat_stream(self, call: UpstreamCall) -> SSEChatStream:
        response = await self._open(call)
        slug = call.candidate.provider.slug
        return SSEChatStream(self._transport, response, slug, call.candidate.api_key, EventTranslator(slug))
