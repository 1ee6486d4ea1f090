"""Request bodies of the inference API as JSON Schema. Their parsers (``domain/*_request.py``) judge OpenAI- and
Anthropic-shaped bodies with many nested variants; the document lists exactly the top-level fields each parser
accepts (its own field set, so an added or removed field shows here), types the main ones, and leaves the rest to
the parser (documented in docs/api.md)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

from tollway.domain import chat_request, embedding_request, image_request, messages_request, responses_request
from tollway.domain.threads import THREAD_ID
from tollway.http.openapi.schemas import BOOLEAN, OBJECT, STRING, Schema

_ANY: Final[Schema] = {"description": "See the SPEC section of this route; judged by the parser."}
_MODEL: Final[Schema] = {"type": "string", "minLength": 1, "maxLength": 256, "description": "A model slug."}
_ITEMS: Final[Schema] = {"type": "array", "items": OBJECT}
_TEXT_OR_ITEMS: Final[Schema] = {"anyOf": [STRING, _ITEMS]}
_MAIN: Final[dict[str, Schema]] = {
    "model": _MODEL,
    "messages": {"type": "array", "minItems": 1, "items": OBJECT},
    "stream": BOOLEAN,
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "max_tokens": {"type": "integer", "minimum": 1},
    "max_completion_tokens": {"type": "integer", "minimum": 1},
    "max_output_tokens": {"type": "integer", "minimum": 1},
    "tools": _ITEMS,
    "metadata": OBJECT,
    "user": {"type": "string", "maxLength": 256},
    "store": BOOLEAN,
    "previous_response_id": {"type": ["string", "null"]},
    "instructions": {"type": ["string", "null"]},
    "thread_id": {"type": "string", "pattern": f"^{THREAD_ID.pattern}$"},
}


def _body(fields: Collection[str], required: tuple[str, ...], overrides: dict[str, Schema], note: str) -> Schema:
    properties: dict[str, Any] = {name: overrides.get(name, _MAIN.get(name, _ANY)) for name in sorted(fields)}
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
        "description": note,
    }


CHAT: Final = _body(
    chat_request.REQUEST_FIELDS,
    ("model", "messages"),
    {"n": {"type": "integer", "minimum": 1, "maximum": chat_request.MAX_CHOICES}},
    "OpenAI's chat completion request (SPEC §7.2); a field outside this list is refused with 400 at its name.",
)
RESPONSES: Final = _body(
    responses_request.REQUEST_FIELDS,
    ("model", "input"),
    {"input": _TEXT_OR_ITEMS},
    "OpenAI's Responses request (SPEC §7.6, §16.3, §16.4).",
)
MESSAGES: Final = _body(
    messages_request.REQUEST_FIELDS,
    ("model", "max_tokens", "messages"),
    {"system": _TEXT_OR_ITEMS},
    "Anthropic's Messages request (SPEC §19).",
)
EMBEDDINGS: Final = _body(
    embedding_request.EMBEDDING_FIELDS,
    ("model", "input"),
    {"input": {"anyOf": [STRING, {"type": "array"}]}, "encoding_format": {"enum": ["float", "base64"]}},
    "OpenAI's embeddings request (SPEC §19).",
)
MODERATIONS: Final = _body(
    embedding_request.MODERATION_FIELDS,
    ("input",),
    {"input": {"anyOf": [STRING, {"type": "array"}]}},
    "OpenAI's moderation request (SPEC §19).",
)
_PROMPT: Final[Schema] = {"type": "string", "minLength": 1, "maxLength": image_request.MAX_PROMPT_CHARS}
IMAGES: Final = _body(
    image_request.OPENAI_IMAGE_FIELDS,
    ("model", "prompt"),
    {
        "prompt": _PROMPT,
        "n": {"type": "integer", "minimum": 1, "maximum": image_request.MAX_IMAGES},
        "response_format": {"enum": ["url", "b64_json"]},
    },
    "OpenAI's image generation request (SPEC §7.7).",
)
ASI1_IMAGES: Final = _body(
    image_request.ASI1_IMAGE_FIELDS,
    ("prompt",),
    {"prompt": _PROMPT, "size": {"enum": list(image_request.ASI1_SIZES)}},
    "ASI:One's image request (SPEC §7.7); without model, the preferred image-capable slug is used.",
)
