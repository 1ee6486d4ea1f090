"""Gemini's embeddings (SPEC §19): ``POST {base_url}/v1beta/models/{upstream_model}:batchEmbedContents`` with
``x-goog-api-key``, translated from and back to OpenAI's embeddings shape.

Each input becomes one ``EmbedContentRequest`` ``{model: "models/…", content: {parts: [{text}]},
outputDimensionality?}``; the answer ``{embeddings: [{values}]}`` keeps input order. Gemini takes at most 100
requests per batch, so longer inputs are sent as several batches at once (one failure fails the call). Token
arrays cannot be expressed (✗ ``unsupported_parameter`` at ``input``); ``user`` is dropped. The Gemini API reports no
usage for embeddings: when an answer carries ``usageMetadata.promptTokenCount`` (Vertex does) it is used, else the
service estimates (``token_count_method: "estimated"``, §9.4).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final
from urllib.parse import quote

from tollway.domain.catalog import Candidate
from tollway.domain.embedding_request import EmbeddingRequest
from tollway.domain.upstream import EmbeddingCall, EmbeddingResult, Vector
from tollway.errors import UnsupportedParameter, UpstreamError
from tollway.providers.capabilities import unsupported
from tollway.providers.content import count
from tollway.providers.gemini.translate import read_error
from tollway.providers.gemini.wire import API_PREFIX
from tollway.providers.openai.embeddings import MAX_COUNT, post_json
from tollway.providers.transport import Transport

BATCH: Final = ":batchEmbedContents"
MAX_BATCH: Final = 100  # Gemini: "at most 100 requests can be in one batch"


def batch_path(upstream_model: str) -> str:
    return API_PREFIX + quote(upstream_model, safe="-._~") + BATCH


def refusal(request: EmbeddingRequest, candidate: Candidate) -> UnsupportedParameter | None:
    if request.tokens is not None:
        return unsupported("input", candidate, "Token-array input", "send the input as text")
    return None


def build_payloads(texts: tuple[str, ...], upstream_model: str, dimensions: int | None) -> list[dict[str, Any]]:
    """One batchEmbedContents body per ≤ 100 inputs, in order."""
    model = f"models/{upstream_model}"
    requests: list[dict[str, Any]] = []
    for text in texts:
        entry: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            entry["outputDimensionality"] = dimensions
        requests.append(entry)
    return [{"requests": requests[i : i + MAX_BATCH]} for i in range(0, len(requests), MAX_BATCH)]


def parse_batch(raw: dict[str, Any], slug: str, expected: int) -> EmbeddingResult:
    """``{"embeddings": [{"values": [floats]}], "usageMetadata"?: {"promptTokenCount"}}`` for ``expected`` inputs."""
    embeddings = raw.get("embeddings")
    if not isinstance(embeddings, list) or len(embeddings) != expected:
        got = len(embeddings) if isinstance(embeddings, list) else "no"
        raise UpstreamError(f"Upstream provider '{slug}' returned {got} embeddings for {expected} inputs.")
    vectors: list[Vector] = []
    for item in embeddings:
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list) or not values:
            raise UpstreamError(f"Upstream provider '{slug}' returned an embedding without values.")
        vectors.append(values)
    metadata = raw.get("usageMetadata")
    prompt = count(metadata.get("promptTokenCount")) if isinstance(metadata, dict) else None
    return EmbeddingResult(tuple(vectors), prompt if prompt is not None and prompt <= MAX_COUNT else None)


def join(results: list[EmbeddingResult]) -> EmbeddingResult:
    """The batches' results as one: usage only when every batch reported it."""
    vectors = tuple(v for result in results for v in result.vectors)
    counts = [result.prompt_tokens for result in results]
    prompt = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
    return EmbeddingResult(vectors, prompt)


class GeminiEmbeddings:
    """The ``EmbeddingAdapter`` capability of kind gemini."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def embedding_refusal(self, request: EmbeddingRequest, candidate: Candidate) -> UnsupportedParameter | None:
        return refusal(request, candidate)

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        candidate = call.candidate
        request = call.request
        assert request.texts is not None, "token arrays are refused before the call"
        url = candidate.provider.base_url + batch_path(candidate.model.upstream_model)
        headers = {"x-goog-api-key": candidate.api_key, "Content-Type": "application/json"}
        slug = candidate.provider.slug

        async def one(payload: dict[str, Any]) -> EmbeddingResult:
            expected = len(payload["requests"])
            return await post_json(
                self._transport,
                candidate,
                call.deadline,
                url,
                payload,
                headers,
                lambda raw: parse_batch(raw, slug, expected),
                read_error,
            )

        payloads = build_payloads(request.texts, candidate.model.upstream_model, request.dimensions)
        if len(payloads) == 1:
            return await one(payloads[0])
        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels the other batches
                tasks = [group.create_task(one(payload)) for payload in payloads]
        except BaseExceptionGroup as failed:  # the attempt fails as that batch failed (retry, fallback: §14.2)
            raise failed.exceptions[0] from None
        return join([task.result() for task in tasks])
