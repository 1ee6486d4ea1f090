"""OpenAI's moderations for kinds ``openai`` and ``openai_compatible`` (SPEC §19): ``POST {base_url}/moderations``
with ``Authorization: Bearer``; ``input`` is forwarded as given, the row's ``upstream_model`` as ``model``.
``parse_moderation`` is pure: the ``results`` pass through unchanged, one per input."""

from __future__ import annotations

from typing import Any, Final

from tollway.domain.catalog import Candidate
from tollway.domain.embedding_request import ModerationRequest
from tollway.domain.upstream import ModerationCall, ModerationResult
from tollway.errors import UpstreamError
from tollway.providers.openai.embeddings import bearer, post_json
from tollway.providers.transport import Transport

PATH: Final = "/moderations"


def build_payload(request: ModerationRequest, candidate: Candidate) -> dict[str, Any]:
    return {"model": candidate.model.upstream_model, "input": request.input}


def parse_moderation(raw: dict[str, Any], slug: str) -> ModerationResult:
    results = raw.get("results")
    if not isinstance(results, list) or not results or not all(isinstance(r, dict) for r in results):
        raise UpstreamError(f"Upstream provider '{slug}' returned a moderation answer without results.")
    ident = raw.get("id")
    return ModerationResult(ident if isinstance(ident, str) and ident else None, results)


class OpenAIModerations:
    """The ``ModerationAdapter`` capability of kinds openai and openai_compatible."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def moderate(self, call: ModerationCall) -> ModerationResult:
        candidate = call.candidate
        slug = candidate.provider.slug
        return await post_json(
            self._transport,
            candidate,
            call.deadline,
            candidate.provider.base_url + PATH,
            build_payload(call.request, candidate),
            bearer(candidate),
            lambda raw: parse_moderation(raw, slug),
        )
