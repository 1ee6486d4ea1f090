"""The image-generation use case (SPEC §7.7, §8): the one call lifecycle with the per-image tariff (hold n × price,
never clamped; capture images returned × price) and the image adapter as its upstream step.

Only rows with ``price_per_image`` whose provider kind has the ``ImageAdapter`` capability serve images. Rate limits
count the request (RPM, RPD); its TPM demand is 0 tokens (§10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tollway.domain.catalog import Candidate
from tollway.domain.image_request import ImageRequest
from tollway.domain.ports.providers import ImageAdapter, Providers
from tollway.domain.pricing import Usage
from tollway.domain.ratelimit import TokenDemand
from tollway.domain.tariffs import IMAGES, Metered
from tollway.domain.upstream import GeneratedImage, ImageCall, ImageResult
from tollway.domain.usage import CallStatus
from tollway.errors import ModelNotFound, TollwayError, UpstreamError
from tollway.services.inference.breaker import DeploymentHealth
from tollway.services.inference.call import CallContext, CallLifecycle, Outcome, Plan, choose
from tollway.services.inference.routing import PlatformCatalog

__all__ = ["GeneratedImages", "ImagesService", "render_image"]

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
    def __init__(self, lifecycle: CallLifecycle, providers: Providers) -> None:
        self._calls = lifecycle
        self._providers = providers
        # Per process, apart from chat's: a row's image endpoint can fail while its chat endpoint works.
        self._health = DeploymentHealth()

    async def generate(self, ctx: CallContext, request: ImageRequest) -> GeneratedImages:
        """Steps 3b-10 of §8 for one image request."""
        plan = self._plan(await self._calls.catalog(ctx), request)
        call = await self._calls.open(ctx, plan, IMAGES, _NO_TOKENS, self._health)
        with call:

            async def call_once(candidate: Candidate) -> ImageResult:
                adapter = self._image_adapter(candidate)
                assert adapter is not None
                result = await adapter.generate_images(ImageCall(request, candidate, call.deadline))
                for image in result.images:  # an answer we cannot render is the provider's fault: fall back
                    render_image(image, request.response_format, candidate.provider.slug)
                return result

            candidate, result = await call.attempt(call_once)
            await call.confirm()
            data = [render_image(image, request.response_format, candidate.provider.slug) for image in result.images]
        delivered = Metered(Usage(0, 0), units=len(result.images))
        call.settle(candidate, delivered, Outcome(CallStatus.SUCCESS))
        return GeneratedImages(data, candidate.provider.slug, plan.slug, call.headers)

    def _plan(self, catalog: PlatformCatalog, request: ImageRequest) -> Plan:
        """Steps 3b and 4: the image-capable usable rows of the slug, minus those refusing a parameter."""
        slug = request.model if request.model is not None else self._default_slug(catalog)
        usable = [c for c in catalog.candidates(slug) if self._image_adapter(c) is not None]
        if not usable:
            raise ModelNotFound(f"The model '{slug}' does not exist or does not generate images.", "model")

        def refusal(candidate: Candidate) -> TollwayError | None:
            adapter = self._image_adapter(candidate)
            assert adapter is not None
            return adapter.image_refusal(request, candidate)

        survivors = choose(usable, refusal)
        limits = {c.model.id: 0 for c in survivors}
        return Plan(slug, survivors, limits, 0, catalog.settings.markup_bps, n=request.n)

    def _image_adapter(self, candidate: Candidate) -> ImageAdapter | None:
        if candidate.model.price_per_image_nanos is None:
            return None
        return self._providers.images(candidate.provider.kind)

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
