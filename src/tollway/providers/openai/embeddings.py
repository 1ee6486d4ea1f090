"""OpenAI's embeddings for kinds ``openai`` and ``openai_compatible`` (SPEC §19): ``POST {base_url}/embeddings``
with ``Authorization: Bearer``; ``input``, ``dimensions``, ``encoding_format`` and ``user`` are forwarded as given.

``build_payload`` and ``parse_embeddings`` are pure. A vector comes back in whichever encoding the provider used
(compatible servers may ignore ``encoding_format``); the service re-encodes it when it differs from the one asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from tollway.domain.catalog import Candidate
from tollway.domain.embedding_request import EmbeddingRequest
from tollway.domain.upstream import EmbeddingCall, EmbeddingResult, Vector
from tollway.errors import UnsupportedParameter, UpstreamError
from tollway.providers.base import ErrorReader
from tollway.providers.content import MAX_TOTAL_TOKENS, count
from tollway.providers.openai.translate import read_error
from tollway.providers.streaming import answered
from tollway.providers.transport import Transport

PATH: Final = "/embeddings"
MAX_COUNT: Final = MAX_TOTAL_TOKENS  # a larger total is absurd: estimated instead (SPEC §9.4)
T = TypeVar("T")


def build_payload(request: EmbeddingRequest, candidate: Candidate) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": candidate.model.upstream_model, "input": request.input_value}
    if request.encoding_format_given:
        payload["encoding_format"] = request.encoding_format
    if request.dimensions is not None:
        payload["dimensions"] = request.dimensions
    if request.user is not None:
        payload["user"] = request.user
    return payload


def parse_embeddings(raw: dict[str, Any], slug: str, expected: int) -> EmbeddingResult:
    """``{"data": [{"index", "embedding": [floats] or "base64"}], "usage": {"prompt_tokens"}}``, one entry per
    input; entries are put in ``index`` order. Anything else is an upstream error."""
    data = raw.get("data")
    if not isinstance(data, list) or len(data) != expected:
        raise UpstreamError(f"Upstream provider '{slug}' returned {_count_of(data)} embeddings for {expected} inputs.")
    vectors: list[Vector | None] = [None] * expected
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            raise UpstreamError(f"Upstream provider '{slug}' returned an embedding entry that is not an object.")
        index = item.get("index", position)
        vector = item.get("embedding")
        if type(index) is not int or not 0 <= index < expected or vectors[index] is not None:
            raise UpstreamError(f"Upstream provider '{slug}' returned embeddings with wrong or repeated indexes.")
        if not isinstance(vector, list | str) or not vector:
            raise UpstreamError(f"Upstream provider '{slug}' returned an embedding that is neither floats nor base64.")
        vectors[index] = vector
    usage = raw.get("usage")
    prompt = count(usage.get("prompt_tokens")) if isinstance(usage, dict) else None
    return EmbeddingResult(tuple(v for v in vectors if v is not None), _sane(prompt))


def _sane(tokens: int | None) -> int | None:
    return tokens if tokens is not None and tokens <= MAX_COUNT else None


def _count_of(data: object) -> str:
    return str(len(data)) if isinstance(data, list) else "no"


async def post_json(
    transport: Transport,
    candidate: Candidate,
    deadline: float,
    url: str,
    payload: dict[str, Any],
    headers: dict[str, str],
    parse: Callable[[dict[str, Any]], T],
    reader: ErrorReader = read_error,
) -> T:
    """POST ``payload`` and parse the JSON answer. A malformed 2xx answer is an upstream error carrying that status:
    it falls back rather than retries (SPEC §14.2)."""
    slug = candidate.provider.slug
    response = await transport.open(slug, url, payload, headers, candidate.api_key, deadline, read_error=reader)
    with answered(response.status, slug):
        return parse(await transport.read_json(response, deadline, slug, candidate.api_key))


def bearer(candidate: Candidate) -> dict[str, str]:
    return {"Authorization": f"Bearer {candidate.api_key}", "Content-Type": "application/json"}


class OpenAIEmbeddings:
    """The ``EmbeddingAdapter`` capability of kinds openai and openai_compatible."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def embedding_refusal(self, request: EmbeddingRequest, candidate: Candidate) -> UnsupportedParameter | None:
        return None  # every field is forwarded

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        candidate = call.candidate
        slug, expected = candidate.provider.slug, call.request.count
        return await post_json(
            self._transport,
            candidate,
            call.deadline,
            candidate.provider.base_url + PATH,
            build_payload(call.request, candidate),
            bearer(candidate),
            lambda raw: parse_embeddings(raw, slug, expected),
        )
