"""ASI:One's image generation (kind ``asi1``, SPEC §7.7): ``POST {base_url}/image/generate`` with
``{prompt, size, model}``, answered ``{"status": 1, "message": "Success", "created": <ms>, "images": [{"url":
"data:image/png;base64,…"}]}``. One image per call, so ``n`` > 1 is refused, and so are ``quality`` and ``style``.

``refusal``, ``build_payload`` and ``parse_images`` are pure; ``generate`` is the network call.
"""

from __future__ import annotations

from typing import Any

from tollway.domain.catalog import Candidate
from tollway.domain.image_request import ImageRequest
from tollway.domain.upstream import GeneratedImage, ImageCall, ImageResult
from tollway.errors import UnsupportedParameter, UpstreamError
from tollway.providers.capabilities import unsupported
from tollway.providers.openai.images import post_json
from tollway.providers.transport import Transport, redact

PATH = "/image/generate"
_EXCERPT_CHARS = 200


def refusal(request: ImageRequest, candidate: Candidate) -> UnsupportedParameter | None:
    if request.n > 1:
        return unsupported("n", candidate, "The parameter 'n' above 1", "it generates one image per request")
    for name in ("quality", "style"):
        if getattr(request, name) is not None:
            return unsupported(name, candidate)
    return None


def build_payload(request: ImageRequest, candidate: Candidate) -> dict[str, Any]:
    payload: dict[str, Any] = {"prompt": request.prompt, "model": candidate.model.upstream_model}
    if request.size is not None and request.size != "auto":  # "auto": the provider's default size
        payload["size"] = request.size
    return payload


def parse_images(raw: dict[str, Any], slug: str) -> ImageResult:
    status = raw.get("status")
    if status != 1 or type(status) is not int:
        message = raw.get("message")
        detail = redact(message, None)[:_EXCERPT_CHARS] if isinstance(message, str) else "no message"
        raise UpstreamError(f"Upstream provider '{slug}' reported an image generation failure: {detail}")
    entries = raw.get("images")
    if not isinstance(entries, list):
        raise UpstreamError(f"Upstream provider '{slug}' returned an image answer without an images list.")
    images: list[GeneratedImage] = []
    for entry in entries:
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not url:
            raise UpstreamError(f"Upstream provider '{slug}' returned an image entry without a url.")
        images.append(GeneratedImage(url=url))
    return ImageResult(tuple(images))


async def generate(transport: Transport, call: ImageCall) -> ImageResult:
    return await post_json(transport, call, PATH, build_payload(call.request, call.candidate), parse_images)
