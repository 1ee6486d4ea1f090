"""Image-generation bodies validated into one canonical ``ImageRequest`` (SPEC §7.7): the OpenAI shape of
``POST /v1/images/generations`` and the ASI:One shape of its alias ``POST /v1/image/generate``.

Strict like every body (SPEC §1.2): unknown fields and bad values are 400 ``invalid_request`` naming the field.
Optional fields given as ``null`` count as absent, as in OpenAI's API; booleans are never numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from tollway.domain.chat_messages import check_fields
from tollway.errors import InvalidRequest

ResponseFormat = Literal["url", "b64_json"]
Shape = Literal["openai", "asi1"]

MAX_IMAGES: Final = 8
MAX_PROMPT_CHARS: Final = 32_000
MAX_USER_CHARS: Final = 256
MAX_MODEL_CHARS: Final = 128
ASI1_SIZES: Final = ("1024x1024", "1792x1024", "1024x1792")
ASI1_DEFAULT_SIZE: Final = "1024x1024"
# quality and style are forwarded as given (OpenAI adds values with new models: standard/hd, low ... max, vivid and
# natural so far), so only their form is checked: a short lowercase word.
_OPTION: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")

_OPENAI_FIELDS: Final = frozenset({"model", "prompt", "n", "size", "response_format", "quality", "style", "user"})
_ASI1_FIELDS: Final = frozenset({"prompt", "size", "model"})
OPENAI_IMAGE_FIELDS: Final = _OPENAI_FIELDS  # the top-level fields the OpenAPI document lists (http/openapi)
ASI1_IMAGE_FIELDS: Final = _ASI1_FIELDS
_SIZE: Final = re.compile(r"[1-9][0-9]{0,4}x[1-9][0-9]{0,4}")


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """A validated image request. ``model`` is None only for the ASI:One shape without one (the service picks the
    default slug); ``size`` None means the provider's default; ``response_format_given`` tells adapters whether the
    client chose the format explicitly (OpenAI's newer models refuse the field, so it is forwarded only then)."""

    shape: Shape
    model: str | None
    prompt: str
    n: int
    size: str | None
    response_format: ResponseFormat
    response_format_given: bool
    quality: str | None
    style: str | None
    user: str | None


def parse_image_request(body: dict[str, Any]) -> ImageRequest:
    """The OpenAI shape: ``{model, prompt, n?, size?, response_format?, quality?, style?, user?}``."""
    check_fields(body, _OPENAI_FIELDS, "", "the image generation request")
    model = _model(body, required=True)
    prompt = _prompt(body)
    n = _count(body.get("n"))
    size = body.get("size")
    if size is not None and (type(size) is not str or (size != "auto" and not _SIZE.fullmatch(size))):
        raise InvalidRequest('size must be "auto" or "<width>x<height>", such as "1024x1024".', "size")
    response_format = body.get("response_format")
    if response_format is not None and response_format not in ("url", "b64_json"):
        raise InvalidRequest('response_format must be "url" or "b64_json".', "response_format")
    return ImageRequest(
        shape="openai",
        model=model,
        prompt=prompt,
        n=n,
        size=size,
        response_format="b64_json" if response_format == "b64_json" else "url",
        response_format_given=response_format is not None,
        quality=_option(body, "quality"),
        style=_option(body, "style"),
        user=_user(body.get("user")),
    )


def parse_asi1_image_request(body: dict[str, Any]) -> ImageRequest:
    """The ASI:One shape: ``{prompt, size?, model?}``; one image, always answered as a data URL."""
    check_fields(body, _ASI1_FIELDS, "", "the image generation request")
    size = body.get("size")
    if size is not None and size not in ASI1_SIZES:
        raise InvalidRequest(f"size must be one of {', '.join(ASI1_SIZES)}.", "size")
    return ImageRequest(
        shape="asi1",
        model=_model(body, required=False),
        prompt=_prompt(body),
        n=1,
        size=size or ASI1_DEFAULT_SIZE,
        response_format="url",
        response_format_given=False,
        quality=None,
        style=None,
        user=None,
    )


def _model(body: dict[str, Any], *, required: bool) -> str | None:
    model = body.get("model")
    if model is None:
        if required:
            raise InvalidRequest("model is required.", "model")
        return None
    if type(model) is not str or not 1 <= len(model) <= MAX_MODEL_CHARS:
        raise InvalidRequest(f"model must be a string of 1 to {MAX_MODEL_CHARS} characters.", "model")
    return model


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequest("prompt is required.", "prompt")
    if type(prompt) is not str or not 1 <= len(prompt) <= MAX_PROMPT_CHARS:
        raise InvalidRequest(f"prompt must be a string of 1 to {MAX_PROMPT_CHARS:,} characters.", "prompt")
    return prompt


def _count(value: object) -> int:
    if value is None:
        return 1
    if type(value) is not int or not 1 <= value <= MAX_IMAGES:
        raise InvalidRequest(f"n must be an integer from 1 to {MAX_IMAGES}.", "n")
    return value


def _option(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if type(value) is not str or not _OPTION.fullmatch(value):
        raise InvalidRequest(f"{name} must be a lowercase word such as {_EXAMPLES[name]}.", name)
    return value


_EXAMPLES: Final = {"quality": '"standard", "hd", "low", "medium", "high" or "auto"', "style": '"vivid" or "natural"'}


def _user(value: object) -> str | None:
    if value is not None and (type(value) is not str or len(value) > MAX_USER_CHARS):
        raise InvalidRequest(f"user must be a string of at most {MAX_USER_CHARS} characters.", "user")
    return value if isinstance(value, str) else None
