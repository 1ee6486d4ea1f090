"""The OpenAI-dialect adapter (kinds ``openai`` and ``openai_compatible``): the only module here on the network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from tollway.domain.catalog import Candidate
from tollway.domain.chat_request import ChatRequest
from tollway.errors import UnsupportedParameter, UpstreamError
from tollway.providers.base import ChatResult, StreamChunk, UpstreamCall
from tollway.providers.openai import translate
from tollway.providers.transport import Transport


class OpenAIStream:
    def __init__(self, transport: Transport, response: aiohttp.ClientResponse, slug: str, secret: str) -> None:
        self._response = response
        self._events = transport.sse_data(response, slug, secret)
        self._slug = slug

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamChunk]:
        async for data in self._events:
            if data == b"[DONE]":
                return
            try:
                raw = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise UpstreamError(f"Upstream provider '{self._slug}' sent an event that is not JSON.") from exc
            choices, usage = translate.normalise_chunk(raw, self._slug)
            yield StreamChunk({"choices": choices}, usage)
        # The connection ended without [DONE]: the stream was cut.
        raise UpstreamError(f"Upstream provider '{self._slug}' ended the stream early.")

    def close(self) -> None:
        self._response.close()


class OpenAIAdapter:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def refusal(self, request: ChatRequest, candidate: Candidate) -> UnsupportedParameter | None:
        return translate.refusal(request, candidate)

    def _headers(self, call: UpstreamCall) -> dict[str, str]:
        return {"Authorization": f"Bearer {call.candidate.api_key}", "Content-Type": "application/json"}

    async def _open(self, call: UpstreamCall) -> aiohttp.ClientResponse:
        candidate = call.candidate
        payload: dict[str, Any] = translate.build_payload(call.request, candidate, call.output_limit)
        return await self._transport.open(
            candidate.provider.slug,
            candidate.provider.base_url + "/chat/completions",
            payload,
            self._headers(call),
            candidate.api_key,
            call.deadline,
        )

    async def chat(self, call: UpstreamCall) -> ChatResult:
        response = await self._open(call)
        slug = call.candidate.provider.slug
        raw = await self._transport.read_json(response, call.deadline, slug, call.candidate.api_key)
        choices, usage = translate.normalise_completion(raw, slug)
        return ChatResult({"choices": choices}, usage)

    async def chat_stream(self, call: UpstreamCall) -> OpenAIStream:
        response = await self._open(call)
        return OpenAIStream(self._transport, response, call.candidate.provider.slug, call.candidate.api_key)
