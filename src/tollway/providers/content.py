"""Reading the hub format's messages for adapters that rebuild them (Anthropic, Gemini): the text of a content
value, data URLs of image parts, tool-call arguments as JSON objects, and the shared finish-chunk and usage shapes.
Pure functions; no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from tollway.domain.pricing import Usage

_DATA_URL: Final = re.compile(r"data:(image/[A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)


def text_of(content: object) -> str:
    """A string content as is; an array of parts as its text (and refusal) parts joined with no separator."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content:
        if isinstance(part, dict):
            value = part.get("text") if part.get("type") == "text" else part.get("refusal")
            if isinstance(value, str):
                texts.append(value)
    return "".join(texts)


def system_text(messages: list[dict[str, Any]]) -> str | None:
    """``system`` and ``developer`` messages joined with a blank line between them, or None when there are none."""
    texts = [text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")]
    return "\n\n".join(texts) if texts else None


def data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64 data)`` of a ``data:image/...;base64,`` URL, or None for any other URL."""
    match = _DATA_URL.fullmatch(url)
    if match is None:
        return None
    return match.group(1).lower(), match.group(2)


def arguments_object(arguments: str) -> dict[str, Any] | None:
    """Tool-call arguments parsed as a JSON object, or None when they are not one."""
    try:  # the standard parser: orjson would turn integers beyond 64 bits into floats
        value = json.loads(arguments, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def tool_call_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    """Tool-call id -> function name, over every assistant message (tool messages name their call by id)."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or ():
            names[call["id"]] = call["function"]["name"]
    return names


MAX_TOKEN_COUNT: Final = 2**31 - 1  # SPEC §9.4: a larger count is absurd, and estimated instead
MAX_TOTAL_TOKENS: Final = 10**9  # SPEC §9.4: so is a prompt + completion total above this


def count(value: object) -> int | None:
    """A token count: a non-negative integer (booleans are not) no larger than 2³¹ − 1, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_COUNT:
        return value
    return None


def usage_of(
    prompt: int | None, completion: int | None, cached: int | None, reasoning: int | None, cache_write: int = 0
) -> Usage | None:
    """The hub Usage, or None when a required count is missing or invalid (then it is estimated, SPEC §9.4).
    Cached and cache-written tokens are parts of the prompt: capped so that together they never exceed it."""
    if prompt is None or completion is None or prompt + completion > MAX_TOTAL_TOKENS:
        return None
    read = min(cached or 0, prompt)
    return Usage(prompt, completion, read, reasoning, min(cache_write, prompt - read))


def choice_delta(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    """One chat.completion.chunk choice."""
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def message_choice(index: int, message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
    """One chat.completion choice; ``message`` gets the fields the openai SDK expects on every message."""
    full = {"role": "assistant", "content": None, "refusal": None, **message}
    return {"index": index, "message": full, "logprobs": None, "finish_reason": finish_reason}
