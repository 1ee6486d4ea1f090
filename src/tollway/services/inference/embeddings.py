"""The embeddings use case (SPEC §19): the one call lifecycle with the embeddings tariff (hold = prompt bound ×
input price; capture = prompt tokens × input price, no output) and the kind's embeddings capability as its upstream
step, answered in OpenAI's shape.

A row serves embeddings when its provider kind has the ``EmbeddingAdapter`` capability (openai, openai_compatible,
gemini) and it carries neither ``price_per_image`` nor ``price_per_request`` (those rows serve images and
moderations). Rate limits count the request (RPM, RPD) and the prompt bound as its TPM demand (§10), corrected to
the prompt tokens billed. Without reported usage the prompt tokens are estimated (§9.4): ⌈bytes ÷ 4⌉ for text
inputs, the exact count for token arrays.
"""

from __future__ import annotations

from typing import Any

from tollway.domain.catalog import Candidate
from tollway.domain.embedding_request import EmbeddingRequest
from tollway.domain.estimation import ceil_quarter
from tollway.domain.ports.providers import EmbeddingAdapter, Providers
from tollway.domain.pricing import Usage
from tollway.domain.ratelimit import TokenDemand
from tollway.domain.tariffs import EmbeddingTariff, Metered
from tollway.domain.upstream import EmbeddingCall, EmbeddingResult, Vector
from tollway.domain.vectors import encode
from tollway.errors import ModelNotFound, TollwayError, UpstreamError
from tollway.services.inference.answers import Completion
from tollway.services.inference.breaker import DeploymentHealth
from tollway.services.inference.call import CallContext, CallLifecycle, Outcome, Plan, choose
from tollway.services.inference.routing import PlatformCatalog

__all__ = ["REQUEST_TYPE", "EmbeddingsService", "estimated_prompt_tokens"]

REQUEST_TYPE = "embedding"


class EmbeddingsService:
    def __init__(self, lifecycle: CallLifecycle, providers: Providers) -> None:
        self._calls = lifecycle
        self._providers = providers
        # Per process, apart from chat's: a row's embeddings endpoint can fail while its chat endpoint works.
        self._health = DeploymentHealth()

    async def embed(self, ctx: CallContext, request: EmbeddingRequest) -> Completion:
        """Steps 3b-10 of §8 for one embeddings request."""
        tariff = EmbeddingTariff(request.input_bounds)
        plan = self._plan(await self._calls.catalog(ctx), request)
        demand = TokenDemand(prompt_tokens=max(tariff.prompt_tokens(c) for c in plan.candidates), n=1, output_limit=0)
        call = await self._calls.open(ctx, plan, tariff, demand, self._health)
        with call:

            async def call_once(candidate: Candidate) -> tuple[list[Vector], int | None]:
                adapter = self._adapter(candidate)
                assert adapter is not None
                result = await adapter.embed(EmbeddingCall(request, candidate, call.deadline))
                return _encoded(result, request, candidate.provider.slug), result.prompt_tokens

            candidate, (vectors, prompt_tokens) = await call.attempt(call_once)
            await call.confirm()
        if prompt_tokens is None:
            used = Metered(Usage(estimated_prompt_tokens(request), 0), "estimated")
        else:
            used = Metered(Usage(prompt_tokens, 0), "reported")
        call.settle(candidate, used, Outcome(await ctx.delivered_status()))
        body = render(vectors, plan.slug, used.usage.prompt_tokens)
        return Completion(body, candidate.provider.slug, call.headers)

    def _plan(self, catalog: PlatformCatalog, request: EmbeddingRequest) -> Plan:
        """Steps 3b and 4: the slug's usable rows that create embeddings, minus those refusing a parameter."""
        usable = [c for c in catalog.candidates(request.model) if self._adapter(c) is not None]
        if not usable:
            raise ModelNotFound(f"The model '{request.model}' does not exist or does not create embeddings.", "model")

        def refusal(candidate: Candidate) -> TollwayError | None:
            adapter = self._adapter(candidate)
            assert adapter is not None
            return adapter.embedding_refusal(request, candidate)

        survivors = choose(usable, refusal)
        limits = {c.model.id: 0 for c in survivors}
        return Plan(request.model, survivors, limits, request.prompt_bound(), catalog.settings.markup_bps)

    def _adapter(self, candidate: Candidate) -> EmbeddingAdapter | None:
        model = candidate.model
        if model.price_per_image_nanos is not None or model.price_per_request_nanos is not None:
            return None
        return self._providers.embeddings(candidate.provider.kind)


def _encoded(result: EmbeddingResult, request: EmbeddingRequest, slug: str) -> list[Vector]:
    """The vectors in the encoding asked for; a vector that is neither numbers nor valid base64 is the provider's
    fault (the attempt fails and falls back)."""
    try:
        return [encode(vector, request.encoding_format) for vector in result.vectors]
    except ValueError as exc:
        raise UpstreamError(
            f"Upstream provider '{slug}' returned an embedding that is neither numbers nor base64.", upstream_status=200
        ) from exc


def estimated_prompt_tokens(request: EmbeddingRequest) -> int:
    """§9.4's estimate when the provider reports no usage: ⌈T_p ÷ 4⌉ for text (T_p before any context cap), the
    exact count for token arrays."""
    if request.tokens is not None:
        return request.prompt_bound()
    return ceil_quarter(request.prompt_bound())


def render(vectors: list[Vector], slug: str, prompt_tokens: int) -> dict[str, Any]:
    """OpenAI's ``list`` of ``embedding`` objects, ``model`` the requested slug."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": slug,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
