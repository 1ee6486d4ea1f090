"""Token estimates when a provider reports no usage (SPEC §9.4): ⌈bytes / 4⌉, at least 1 when anything was sent."""

from __future__ import annotations

from typing import Any

import orjson


def ceil_quarter(byte_count: int) -> int:
    return -(-byte_count // 4)


def delivered_bytes(delta_or_message: dict[str, Any]) -> int:
    """UTF-8 bytes of content, reasoning and tool-call names and arguments in one message or delta."""
    total = 0
    for field in ("content", "reasoning_content", "refusal"):
        value = delta_or_message.get(field)
        if isinstance(value, str):
            total += len(value.encode("utf-8"))
    calls = delta_or_message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                for part in ("name", "arguments"):
                    value = function.get(part)
                    if isinstance(value, str):
                        total += len(value.encode("utf-8"))
    return total


def estimate_completion_tokens(byte_count: int) -> int:
    return ceil_quarter(byte_count) if byte_count > 0 else 0


def compact_json_bytes(value: Any) -> int:
    """B(x) of §9.3: compact JSON, non-ASCII unescaped (orjson's output is exactly that)."""
    return len(orjson.dumps(value))
