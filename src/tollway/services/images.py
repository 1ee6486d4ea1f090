"""The image-generation use case (SPEC §7.7, §8): the same pre-flight, rate limits, holds, retries, fallback and
breakers as chat, with money counted per image: hold n × price (never clamped), capture images returned × price.

Only model rows with ``price_per_image`` whose provider kind has the ``ImageAdapter`` capability serve images.
Rate limits count the request (RPM, RPD); its TPM demand is 0 tokens (§10).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy.exc

from tollway.domain.catalog import Candidate
from tollway.domain.image_request import ImageRequest
from tollway.domain.ratelimit import TokenDemand
from tollway.errors import ModelNotFound, ServiceUnavailable, TollwayError, UpstreamError
from tollway.providers.base import GeneratedImage, ImageAdapter, ImageCall, ImageResult
from tollway.providers.registry import AdapterRegistry
from tollway.services.attempts import with_fallback
from tollway.services.billing import Billing, CallContext, Plan
from tollway.services.breaker import DeploymentHealth
from tollway.services.ratelimit import Admission, RateLimiter
from tollway.services.routing import CandidateRouter, PlatformCatalog
from tollway.settings import Settings

__all__ = ["GeneratedImages", "ImagesService", "render_image"]

log = logging.getLogger("tollway.images")

REQUEST_TYPE = "image"
_NO_TOKENS = TokenDemand(prompt_tokens=0, n=1, output_limit=0)  # TPM demand of an image call (§10)
_DATA_URL_PREFIX = "data:image/png;base64,"


@dataclass(slots=True)
class GeneratedImages:
    """The images in the shape asked for (``{"url"}`` or ``{"b64_json"}`` each), and who served them."""

    data: list[dict[str, Any]]
    provider_slug: str
    slug: str
    headers: dict[str, str] = field(default_factory=dict)


class ImagesService:
    def __init__(
        self,
        settings: Settings,
        router: CandidateRouter,
        billing: Billing,
        limiter: RateLimiter,
        adapters: AdapterRegistry,
    ) -> None:
        self._settings = settings
        self._router = router
        self._billing = billing
        self._limiter = limiter
        self._adapters = adapters
        # Per process, apart from chat's: a row's image endpoint can fail while its chat endpoint works.
        self._health = DeploymentHealth()

    async def generate(self, ctx: CallContext, request: ImageRequest) -> GeneratedImages:
        """Steps 3b-10 of §8 for one image request."""
        principal = ctx.principal
        assert principal.platform_id is not None
        plan, slug = await self._plan(principal.platform_id, request)
        admission = await self._limiter.admit(principal.platform_id, principal.end_user_id, _NO_TOKENS)
        try:
            await self._billing.hold_images(ctx, slug, request.n, plan)
        except BaseException:
            self._limiter.refund(admission)  # a refusal in steps 6-9 returns the TPM reservation (§8)
            raise
        try:
            candidate, result = await self._call_upstream(ctx, request, slug, plan)
            await self._billing.confirm(plan)
            data = [render_image(image, request.response_format, candidate.provider.slug) for image in result.images]
        except BaseException:
            self._billing.release(plan)
            self._limiter.refund(admission)
            raise
        self._billing.settle_images(ctx, slug, plan, candidate, len(result.images))
        self._limiter.adjust(admission, 0)
        return GeneratedImages(data, candidate.provider.slug, slug, _headers(admission))

    # -- pre-flight --------------------------------------------------------------------------------------------

    async def _plan(self, platform_id: str, request: ImageRequest) -> tuple[Plan, str]:
        """Steps 3b and 4: the image-capable usable rows of the slug, minus those refusing a parameter."""
        try:
            catalog = await self._router.catalog(platform_id)
        except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable("The database is unreachable.") from exc
        slug = request.model if request.model is not None else self._default_slug(catalog)
        usable = [c for c in catalog.candidates(slug) if self._image_adapter(c) is not None]
        if not usable:
            raise ModelNotFound(f"The model '{slug}' does not exist or does not generate images.", "model")
        survivors: list[Candidate] = []
        first_reason: TollwayError | None = None
        for candidate in usable:
            adapter = self._image_adapter(candidate)
            assert adapter is not None
            reason = adapter.image_refusal(request, candidate)
            if reason is None:
                survivors.append(candidate)
            elif first_reason is None:
                first_reason = reason
        if not survivors:
            assert first_reason is not None
            raise first_reason
        return Plan(survivors, {c.model.id: 0 for c in survivors}, 0, catalog.settings.markup_bps), slug

    def _image_adapter(self, candidate: Candidate) -> ImageAdapter | None:
        if candidate.model.price_per_image_nanos is None:
            return None
        return self._adapters.images(candidate.provider.kind)

    def _default_slug(self, catalog: PlatformCatalog) -> str:
        """The ASI:One shape without ``model``: the image-capable slug with the lowest (priority, slug) (§7.7)."""
        ranked = [
            (c.model.priority, slug)
            for slug, rows in catalog.by_slug.items()
            for c in rows
            if self._image_adapter(c) is not None
        ]
        if not ranked:
            raise ModelNotFound("No image generation model is enabled for this platform.", "model")
        return min(ranked)[1]

    # -- the call ----------------------------------------------------------------------------------------------

    async def _call_upstream(
        self, ctx: CallContext, request: ImageRequest, slug: str, plan: Plan
    ) -> tuple[Candidate, ImageResult]:
        """Step 9: retries and fallback over the candidates (§14.2); every failed attempt logged at zero cost."""
        deadline = asyncio.get_running_loop().time() + self._settings.total_timeout_s

        async def call_once(candidate: Candidate) -> ImageResult:
            adapter = self._image_adapter(candidate)
            assert adapter is not None
            result = await adapter.generate_images(ImageCall(request, candidate, deadline))
            for image in result.images:  # an answer we cannot render is the provider's fault: fall back
                render_image(image, request.response_format, candidate.provider.slug)
            return result

        def failed(candidate: Candidate, error: UpstreamError) -> None:
            log.warning("upstream image attempt failed: %s", error.message, extra={"request_id": ctx.request_id})
            self._billing.log_image_failure(ctx, slug, candidate, error.code)

        return await with_fallback(plan.candidates, call_once, failed, deadline, health=self._health)


def render_image(image: GeneratedImage, response_format: str, provider_slug: str) -> dict[str, Any]:
    """One image in the format asked for: base64 becomes a ``data:image/png;base64,`` URL when a URL was asked
    for, and a data URL becomes bare base64 when ``b64_json`` was; a hosted URL cannot become base64."""
    extra = {"revised_prompt": image.revised_prompt} if image.revised_prompt is not None else {}
    if response_format == "url":
        if image.b64_json is not None:
            return {"url": _DATA_URL_PREFIX + image.b64_json, **extra}
        assert image.url is not None
        return {"url": image.url, **extra}
    if image.b64_json is not None:
        return {"b64_json": image.b64_json, **extra}
    assert image.url is not None
    head, comma, data = image.url.partition(",")
    if image.url.startswith("data:image/") and head.endswith(";base64") and comma and data:
        return {"b64_json": data, **extra}
    raise UpstreamError(
        f"Upstream provider '{provider_slug}' returned a hosted image URL where base64 was asked for.",
        upstream_status=200,  # the provider answered: fall back rather than retry
    )


def _headers(admission: Admission) -> dict[str, str]:
    return dict(admission.headers)
