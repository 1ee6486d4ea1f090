"""OpenAI's image generation for kinds ``openai`` and ``openai_compatible`` (SPEC §7.7):
``POST {base_url}/images/generations`` with ``Authorization: Bearer``.

``build_payload`` and ``parse_images`` are pure; ``generate`` is the network call the adapter delegates to.
``response_format`` is forwarded only when the client chose it: OpenAI's newer image models (gpt-image-1) refuse
the field and always answer in base64, which the service turns into a data URL when a URL was asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tollway.domain.catalog import Candidate
from tollway.domain.image_request import ImageRequest
from tollway.domain.upstream import GeneratedImage, ImageCall, ImageResult
from tollway.errors import UpstreamError
from tollway.providers.openai.translate import read_error
from tollway.providers.streaming import answered
from tollway.providers.transport import Transport

PATH = "/images/generations"


def build_payload(request: ImageRequest, candidate: Candidate) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": candidate.model.upstream_model, "prompt": request.prompt, "n": request.n}
    if request.size is not None:
        payload["size"] = request.size
    if request.response_format_given:
        payload["response_format"] = request.response_format
    for key in ("quality", "style", "user"):
        value = getattr(request, key)
        if value is not None:
            payload[key] = value
    return payload


def parse_images(raw: dict[str, Any], slug: str) -> ImageResult:
    """``{"created", "data": [{"url"} or {"b64_json"}, revised_prompt?]}``; anything else is an upstream error."""
    data = raw.get("data")
    if not isinstance(data, list):
        raise UpstreamError(f"Upstream provider '{slug}' returned an image answer without a data list.")
    images: list[GeneratedImage] = []
    for item in data:
        if not isinstance(item, dict):
            raise UpstreamError(f"Upstream provider '{slug}' returned an image entry that is not an object.")
        url, b64 = item.get("url"), item.get("b64_json")
        revised = item.get("revised_prompt")
        revised = revised if isinstance(revised, str) else None
        if isinstance(b64, str) and b64:
            images.append(GeneratedImage(b64_json=b64, revised_prompt=revised))
        elif isinstance(url, str) and url:
            images.append(GeneratedImage(url=url, revised_prompt=revised))
        else:
            raise UpstreamError(f"Upstream provider '{slug}' returned an image entry with neither url nor b64_json.")
    return ImageResult(tuple(images))


async def post_json(
    transport: Transport,
    call: ImageCall,
    path: str,
    payload: dict[str, Any],
    parse: Callable[[dict[str, Any], str], ImageResult],
) -> ImageResult:
    """POST ``payload`` to ``{base_url}{path}`` with the Bearer key and parse the JSON answer (shared with asi1).
    A malformed 2xx answer is an upstream error carrying that status: it falls back rather than retries."""
    candidate = call.candidate
    slug = candidate.provider.slug
    headers = {"Authorization": f"Bearer {candidate.api_key}", "Content-Type": "application/json"}
    response = await transport.open(
        slug,
        candidate.provider.base_url + path,
        payload,
        headers,
        candidate.api_key,
        call.deadline,
        read_error=read_error,
    )
    with answered(response.status, slug):
        return parse(await transport.read_json(response, call.deadline, slug, candidate.api_key), slug)


async def generate(transport: Transport, call: ImageCall) -> ImageResult:
    return await post_json(transport, call, PATH, build_payload(call.request, call.candidate), parse_images)
