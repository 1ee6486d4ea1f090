"""Gemini API wire shapes (https://ai.google.dev/api/generate-content), as far as Tollway uses them.

Request: ``POST {base_url}/v1beta/models/{model}:generateContent`` (stream: ``:streamGenerateContent?alt=sse``) with
``x-goog-api-key``; the body has ``contents`` (user/model turns of parts), ``systemInstruction``, ``tools``
(``functionDeclarations``), ``toolConfig.functionCallingConfig`` and ``generationConfig``.
Response (and each SSE event): ``{"candidates": [{"content": {"parts": [...]}, "finishReason", "index"}],
"usageMetadata": {...}}``. Errors: ``{"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED"}}``.
JSON follows proto3 rules: fields at their default (0, false, empty) are omitted.
"""

from __future__ import annotations

from typing import Any, Final, Literal, NotRequired, TypedDict
from urllib.parse import quote

API_PREFIX: Final = "/v1beta/models/"
GENERATE: Final = ":generateContent"
STREAM: Final = ":streamGenerateContent?alt=sse"

# SPEC §7.4: STOP -> stop (tool_calls when the candidate called functions), MAX_TOKENS -> length,
# safety/recitation/blocklist/prohibited reasons -> content_filter, anything else -> stop.
CONTENT_FILTER_REASONS: Final = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)

CALLING_MODES: Final[dict[str, str]] = {"auto": "AUTO", "required": "ANY", "none": "NONE", "function": "ANY"}


def model_path(upstream_model: str, stream: bool) -> str:
    """The method path; the model name is percent-encoded so that it stays one path segment."""
    return API_PREFIX + quote(upstream_model, safe="-._~") + (STREAM if stream else GENERATE)


class Part(TypedDict, total=False):
    text: str
    thought: bool
    inlineData: dict[str, str]
    functionCall: dict[str, Any]
    functionResponse: dict[str, Any]
    thoughtSignature: str


class Content(TypedDict):
    role: Literal["user", "model"]
    parts: list[Part]


class FunctionDeclaration(TypedDict):
    name: str
    description: NotRequired[str]
    parametersJsonSchema: NotRequired[dict[str, Any]]
