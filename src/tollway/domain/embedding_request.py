"""Bodies of ``POST /v1/embeddings`` and ``POST /v1/moderations`` validated into ``EmbeddingRequest`` and
``ModerationRequest`` (SPEC §19), with the embeddings prompt bound that sizes the hold and the TPM demand.

Strict like every body (SPEC §1.2, and as ``/v1/chat/completions`` does): unknown fields and bad values are 400
``invalid_request`` naming the field's JSON path. Optional fields given as ``null`` count as absent.

Prompt bound of an embeddings request (the §9.3 rule adapted): each input counts its UTF-8 byte length when it is a
string (a token is at least one byte) and its length when it is a token array; a row's ``context_window`` caps each
input, since every input is embedded on its own (``EmbeddingRequest.prompt_bound``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from tollway.domain.chat_messages import check_fields
from tollway.errors import InvalidRequest

EncodingFormat = Literal["float", "base64"]

MAX_INPUTS: Final = 2048  # OpenAI's limit on inputs per embeddings request
MAX_TOKEN_ID: Final = 2**31 - 1
MAX_USER_CHARS: Final = 256
MAX_MODEL_CHARS: Final = 128
MAX_DIMENSIONS: Final = 65_536

_EMBEDDING_FIELDS: Final = frozenset({"model", "input", "dimensions", "encoding_format", "user"})
_MODERATION_FIELDS: Final = frozenset({"model", "input"})
EMBEDDING_FIELDS: Final = _EMBEDDING_FIELDS  # the top-level fields the OpenAPI document lists (http/openapi)
MODERATION_FIELDS: Final = _MODERATION_FIELDS
_TEXT_PART_FIELDS: Final = frozenset({"type", "text"})
_IMAGE_PART_FIELDS: Final = frozenset({"type", "image_url"})
_IMAGE_URL_FIELDS: Final = frozenset({"url"})


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """A validated embeddings request. Exactly one of ``texts`` and ``tokens`` holds the inputs, in order;
    ``input_value`` is the ``input`` as the client sent it (forwarded unchanged to OpenAI-dialect providers)."""

    model: str
    input_value: str | list[Any]
    texts: tuple[str, ...] | None
    tokens: tuple[tuple[int, ...], ...] | None
    dimensions: int | None
    encoding_format: EncodingFormat
    encoding_format_given: bool
    user: str | None
    input_bounds: tuple[int, ...]  # each input's token bound: UTF-8 bytes of a string, length of a token array

    @property
    def count(self) -> int:
        inputs = self.texts if self.texts is not None else self.tokens
        assert inputs is not None
        return len(inputs)

    def prompt_bound(self, context_window: int | None = None) -> int:
        """The prompt tokens this request can be billed for at most: Σ per input, each capped at the context."""
        bounds = self.input_bounds
        if context_window is None:
            return sum(bounds)
        return sum(min(bound, context_window) for bound in bounds)


@dataclass(frozen=True, slots=True)
class ModerationRequest:
    """A validated moderations request. ``model`` None means the platform's default moderation slug; ``input`` is
    forwarded as sent (a string, a list of strings, or OpenAI's list of text and image_url parts)."""

    model: str | None
    input: str | list[Any]


def parse_embedding_request(body: dict[str, Any]) -> EmbeddingRequest:
    check_fields(body, _EMBEDDING_FIELDS, "", "the embeddings request")
    model = _model(body.get("model"), required=True)
    assert model is not None
    value = body.get("input")
    texts, tokens = _embedding_input(value)
    dimensions = body.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or not 1 <= dimensions <= MAX_DIMENSIONS):
        raise InvalidRequest(f"dimensions must be an integer from 1 to {MAX_DIMENSIONS:,}.", "dimensions")
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise InvalidRequest('encoding_format must be "float" or "base64".', "encoding_format")
    user = body.get("user")
    if user is not None and (type(user) is not str or len(user) > MAX_USER_CHARS):
        raise InvalidRequest(f"user must be a string of at most {MAX_USER_CHARS} characters.", "user")
    assert isinstance(value, str | list)
    if texts is not None:
        bounds = tuple(len(text.encode("utf-8")) for text in texts)
    else:
        assert tokens is not None
        bounds = tuple(len(array) for array in tokens)
    return EmbeddingRequest(
        model=model,
        input_value=value,
        texts=texts,
        tokens=tokens,
        dimensions=dimensions,
        encoding_format="base64" if encoding == "base64" else "float",
        encoding_format_given=encoding is not None,
        user=user,
        input_bounds=bounds,
    )


def parse_moderation_request(body: dict[str, Any]) -> ModerationRequest:
    check_fields(body, _MODERATION_FIELDS, "", "the moderations request")
    model = _model(body.get("model"), required=False)
    value = body.get("input")
    if value is None:
        raise InvalidRequest("input is required.", "input")
    if isinstance(value, str):
        return ModerationRequest(model, value)
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_INPUTS:
        raise InvalidRequest(
            f"input must be a string, or a list of 1 to {MAX_INPUTS} strings or of text and image_url parts.", "input"
        )
    if all(isinstance(item, str) for item in value):
        return ModerationRequest(model, value)
    for index, part in enumerate(value):
        _moderation_part(part, f"input[{index}]")
    return ModerationRequest(model, value)


def _model(model: object, *, required: bool) -> str | None:
    if model is None:
        if required:
            raise InvalidRequest("model is required.", "model")
        return None
    if type(model) is not str or not 1 <= len(model) <= MAX_MODEL_CHARS:
        raise InvalidRequest(f"model must be a string of 1 to {MAX_MODEL_CHARS} characters.", "model")
    return model


_INPUT_SHAPES: Final = (
    "input must be a non-empty string, a list of non-empty strings, a token array (a list of integers) "
    f"or a list of token arrays, with at most {MAX_INPUTS} inputs."
)


def _embedding_input(value: object) -> tuple[tuple[str, ...] | None, tuple[tuple[int, ...], ...] | None]:
    """(texts, None) or (None, token arrays): the four shapes OpenAI accepts."""
    if value is None:
        raise InvalidRequest("input is required.", "input")
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("input must not be an empty string.", "input")
        return (value,), None
    if not isinstance(value, list) or not value:
        raise InvalidRequest(_INPUT_SHAPES, "input")
    first = value[0]
    if type(first) is int:  # one token array: its length is bounded by the body size, not by MAX_INPUTS
        return None, (_token_array(value, "input"),)
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"input must hold at most {MAX_INPUTS} inputs.", "input")
    if isinstance(first, str):
        return tuple(_text(item, f"input[{i}]") for i, item in enumerate(value)), None
    if isinstance(first, list):
        return None, tuple(_token_array(item, f"input[{i}]") for i, item in enumerate(value))
    raise InvalidRequest(_INPUT_SHAPES, "input[0]")


def _text(item: object, path: str) -> str:
    if not isinstance(item, str) or not item:
        raise InvalidRequest("every input of a list of strings must be a non-empty string.", path)
    return item


def _token_array(value: object, path: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest("a token array must be a non-empty list of integers.", path)
    for index, token in enumerate(value):
        if type(token) is not int or not 0 <= token <= MAX_TOKEN_ID:
            raise InvalidRequest(f"token ids must be integers from 0 to {MAX_TOKEN_ID}.", f"{path}[{index}]")
    return tuple(value)


def _moderation_part(part: object, path: str) -> None:
    if not isinstance(part, dict):
        raise InvalidRequest("a list input must hold only strings, or only text and image_url parts.", path)
    kind = part.get("type")
    if kind == "text":
        check_fields(part, _TEXT_PART_FIELDS, path, "a text part")
        if not isinstance(part.get("text"), str):
            raise InvalidRequest("a text part needs a string text.", f"{path}.text")
    elif kind == "image_url":
        check_fields(part, _IMAGE_PART_FIELDS, path, "an image_url part")
        image = part.get("image_url")
        if not isinstance(image, dict):
            raise InvalidRequest("image_url must be an object {url}.", f"{path}.image_url")
        check_fields(image, _IMAGE_URL_FIELDS, f"{path}.image_url", "image_url")
        url = image.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:image/")):
            raise InvalidRequest("image_url.url must be an http(s) URL or a data:image/ URL.", f"{path}.image_url.url")
    else:
        raise InvalidRequest('a part\'s type must be "text" or "image_url".', f"{path}.type")
