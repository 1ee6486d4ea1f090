"""The moderations use case (SPEC §19): the one call lifecycle with the per-request tariff (hold and charge = the
row's ``price_per_request``, which may be 0) and the kind's moderations capability as its upstream step.

A row serves moderations when it has ``price_per_request`` set and its provider kind has the ``ModerationAdapter``
capability (openai, openai_compatible). Without ``model`` the platform's moderation slug with the lowest
(priority, slug) is used, as the ASI:One image shape does (§7.7). Rate limits count the request (RPM, RPD); a call
priced per request has no TPM demand, like an image call.
"""

from __future__ import annotations

import uuid
from typing import Any

from tollway.domain.catalog import Candidate
from tollway.domain.embedding_request import ModerationRequest
from tollway.domain.ports.providers import ModerationAdapter, Providers
from tollway.domain.pricing import Usage
from tollway.domain.ratelimit import TokenDemand
from tollway.domain.tariffs import MODERATIONS, Metered
from tollway.domain.upstream import ModerationCall, ModerationResult
from tollway.errors import ModelNotFound
from tollway.services.inference.answers import Completion
from tollway.services.inference.breaker import DeploymentHealth
from tollway.services.inference.call import CallContext, CallLifecycle, Outcome, Plan
from tollway.services.inference.routing import PlatformCatalog

__all__ = ["REQUEST_TYPE", "ModerationsService"]

REQUEST_TYPE = "moderation"
_NO_TOKENS = TokenDemand(prompt_tokens=0, n=1, output_limit=0)  # TPM demand of a call priced per request (§10)


class ModerationsService:
    def __init__(self, lifecycle: CallLifecycle, providers: Providers) -> None:
        self._calls = lifecycle
        self._providers = providers
        self._health = DeploymentHealth()

    async def moderate(self, ctx: CallContext, request: ModerationRequest) -> Completion:
        """Steps 4-10 of §8 for one moderations request (no parameter can be refused, so no step 3b)."""
        plan = self._plan(await self._calls.catalog(ctx), request)
        call = await self._calls.open(ctx, plan, MODERATIONS, _NO_TOKENS, self._health)
        with call:

            async def call_once(candidate: Candidate) -> ModerationResult:
                adapter = self._adapter(candidate)
                assert adapter is not None
                return await adapter.moderate(ModerationCall(request, candidate, call.deadline))

            candidate, result = await call.attempt(call_once)
            await call.confirm()
        call.settle(candidate, Metered(Usage(0, 0), units=1), Outcome(await ctx.delivered_status()))
        return Completion(render(result, plan.slug), candidate.provider.slug, call.headers)

    def _plan(self, catalog: PlatformCatalog, request: ModerationRequest) -> Plan:
        slug = request.model if request.model is not None else self._default_slug(catalog)
        usable = [c for c in catalog.candidates(slug) if self._adapter(c) is not None]
        if not usable:
            raise ModelNotFound(f"The model '{slug}' does not exist or does not moderate.", "model")
        return Plan(slug, usable, {c.model.id: 0 for c in usable}, 0, catalog.settings.markup_bps)

    def _adapter(self, candidate: Candidate) -> ModerationAdapter | None:
        if candidate.model.price_per_request_nanos is None:
            return None
        return self._providers.moderations(candidate.provider.kind)

    def _default_slug(self, catalog: PlatformCatalog) -> str:
        ranked = [
            (c.model.priority, slug)
            for slug, rows in catalog.by_slug.items()
            for c in rows
            if self._adapter(c) is not None
        ]
        if not ranked:
            raise ModelNotFound("No moderation model is enabled for this platform.", "model")
        return min(ranked)[1]


def render(result: ModerationResult, slug: str) -> dict[str, Any]:
    """OpenAI's moderation object; ``model`` is the requested slug."""
    ident = result.id if result.id is not None else f"modr-{uuid.uuid4().hex}"
    return {"id": ident, "model": slug, "results": result.results}
