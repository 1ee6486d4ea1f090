"""Anthropic Messages API wire shapes (https://docs.anthropic.com/en/api/messages), as far as Tollway uses them.

Request: ``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version: 2023-06-01``; the body has
``model``, ``max_tokens``, ``messages`` (user/assistant turns of content blocks), ``system``, ``stop_sequences``,
``temperature``, ``top_p``, ``top_k``, ``tools``, ``tool_choice``, ``metadata``, ``thinking``, ``stream``.
Response: ``{"type": "message", "content": [blocks], "stop_reason", "usage": {...}}``. Stream: SSE events
``message_start``, ``content_block_start|delta|stop``, ``message_delta``, ``message_stop``, ``ping``, ``error``.
Errors: ``{"type": "error", "error": {"type": "rate_limit_error", "message": "..."}}``.
"""

from __future__ import annotations

from typing import Any, Final, Literal, NotRequired, TypedDict

API_VERSION: Final = "2023-06-01"
PATH: Final = "/v1/messages"
MIN_THINKING_BUDGET: Final = 1_024  # Anthropic refuses smaller thinking budgets

# SPEC §7.4; unknown or missing reasons finish as "stop".
FINISH_REASONS: Final[dict[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# The HTTP status an error event stands for, so that an error before the first byte is retried or not like the
# same error returned as an HTTP status (SPEC §14.2).
ERROR_STATUSES: Final[dict[str, int]] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class TextBlock(TypedDict):
    type: Literal["text"]
    text: str


class ImageSource(TypedDict):
    type: Literal["base64", "url"]
    media_type: NotRequired[str]
    data: NotRequired[str]
    url: NotRequired[str]


class ImageBlock(TypedDict):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(TypedDict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(TypedDict):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str


class ThinkingBlock(TypedDict):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(TypedDict):
    type: Literal["redacted_thinking"]
    data: str


Block = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock


class Turn(TypedDict):
    role: Literal["user", "assistant"]
    content: list[Block]


class Tool(TypedDict):
    name: str
    description: NotRequired[str]
    input_schema: dict[str, Any]
