"""The fake upstream's model strings (``fake/echo?ms=50``) parsed into scenarios, and its token counting; no I/O.

The behaviour is the last ``/`` segment of the part before ``?`` (so ``fake/echo`` and ``echo`` both echo);
the query holds url-encoded parameters, which combine freely. An unknown name gives the default answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

DEFAULT_CONTENT = "Hello! I am a fake model."
DEFAULT_WORDS = 16
# default: DEFAULT_CONTENT (or n words), or, when the request asks for a JSON schema (response_format, text.format),
# a small value that follows it (schema_example); echo: the last user message's text; error: an HTTP error status;
# stream-cut: the stream stops after `after` pieces with no [DONE] (non-stream: the connection closes, no reply);
# stream-error: a `data: {"error": ...}` event after `after` pieces (non-stream: the HTTP error); tool-call: one
# function call; length: finish_reason "length"; words: "w1 ... wN"; garbage: a 200 whose body/event is not JSON;
# redirect: a 307 to the same URL (a client that follows it loops; Tollway must not follow it); agent: a function
# call (as tool-call) until the conversation holds `calls` tool results (default 1) since its last user message,
# then "The tool returned: <the last result>" (an agent loop runs to completion against it, in every dialect).
KINDS = (
    "default", "echo", "error", "stream-cut", "stream-error", "tool-call", "length", "words", "garbage", "redirect",
    "agent",
)  # fmt: skip

# Tool-call arguments are streamed, and counted as completion tokens, in fragments of this many characters.
TOOL_ARGS_FRAGMENT = 4

_PARAMS = frozenset(
    {
        "ms",  # sleep before answering (before the status line; for streams, before the first event)
        "delay_ms",  # sleep between stream events
        "n",  # content is "w1 w2 ... wN"
        "status",  # error: the HTTP status (400-599, default 500)
        "retry_after",  # error: the Retry-After header (seconds)
        "retry_after_ms",  # error: the retry-after-ms header the openai SDK prefers (fast retry tests)
        "type",  # error: the error type and code (insufficient_quota: quota-exhausted; context_length_exceeded: the
        # dialect's own refusal of a too-long input, e.g. Anthropic's "prompt is too long")
        "param",  # error: the parameter the error names, the dialect's way (OpenAI param, Anthropic prefix, Gemini
        # BadRequest field violation)
        "times",  # error: fail only the first K calls with this exact model string
        "after",  # stream-cut / stream-error: content pieces sent before the cut or the error event
        "in",  # usage.prompt_tokens
        "out",  # usage.completion_tokens
        "cached",  # usage.prompt_tokens_details.cached_tokens (cache reads, part of `in`)
        "cache_write",  # prompt tokens written to a cache, part of `in` (Anthropic: cache_creation_input_tokens)
        "reasoning",  # usage.completion_tokens_details.reasoning_tokens
        "no_usage",  # 1: never report usage
        "name",  # tool-call: the function name
        "args",  # tool-call: the function arguments (a JSON string)
        "thought",  # reasoning text sent before the answer (reasoning_content, thinking blocks, thought parts)
        "hosted",  # Responses dialect: a hosted-tool output item of this type (web_search_call) before the answer
        "calls",  # agent: tool results to collect before answering (default 1)
    }
)
_PIECE = re.compile(r"\s*\S+(?:\s+\Z)?")


class ScenarioError(ValueError):
    """A model string has an unknown or malformed parameter (the fake answers 400, so typos surface)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """What one model string asks the fake upstream to do."""

    kind: str = "default"
    delay_ms: int = 0
    event_delay_ms: int = 0
    words: int | None = None
    status: int = 500
    retry_after: str | None = None
    retry_after_ms: str | None = None
    error_type: str | None = None
    param: str | None = None
    times: int | None = None
    cut_after: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    no_usage: bool = False
    tool_name: str = "fake_tool"
    tool_args: str = "{}"
    thought: str | None = None
    hosted: str | None = None
    calls: int = 1


def parse_model(model: str) -> Scenario:
    """Parse ``name?key=value&...``; raises ScenarioError on an unknown key or a bad value."""
    name, _, query = model.partition("?")
    kind = name.rsplit("/", 1)[-1]
    if kind not in KINDS:
        kind = "default"
    params = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(params.keys() - _PARAMS)
    if unknown:
        raise ScenarioError(f"fake upstream: unknown model parameter(s) {', '.join(unknown)} in {model!r}")
    status = _int(params, "status", 500)
    if not 400 <= status <= 599:
        raise ScenarioError(f"fake upstream: status must be 400-599, got {status}")
    error_type = params.get("type") or None
    cut_after = _opt_int(params, "after")
    if kind in ("stream-cut", "stream-error") and cut_after is None:
        cut_after = 0
    words = _opt_int(params, "n")
    if kind == "words" and words is None:
        words = DEFAULT_WORDS
    return Scenario(
        kind=kind,
        delay_ms=_int(params, "ms", 0),
        event_delay_ms=_int(params, "delay_ms", 0),
        words=words,
        status=status,
        retry_after=params.get("retry_after"),
        retry_after_ms=params.get("retry_after_ms"),
        error_type=error_type,
        param=params.get("param") or None,
        times=_opt_int(params, "times"),
        cut_after=cut_after,
        prompt_tokens=_opt_int(params, "in"),
        completion_tokens=_opt_int(params, "out"),
        cached_tokens=_int(params, "cached", 0),
        cache_write_tokens=_int(params, "cache_write", 0),
        reasoning_tokens=_int(params, "reasoning", 0),
        no_usage=_int(params, "no_usage", 0) != 0,
        tool_name=params.get("name") or "fake_tool",
        tool_args=params.get("args", "{}"),
        thought=params.get("thought") or None,
        hosted=params.get("hosted") or None,
        calls=_int(params, "calls", 1),
    )


def _opt_int(params: Mapping[str, str], key: str) -> int | None:
    raw = params.get(key)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ScenarioError(f"fake upstream: model parameter {key}={raw!r} is not an integer") from None
    if value < 0:
        raise ScenarioError(f"fake upstream: model parameter {key}={raw!r} is negative")
    return value


def _int(params: Mapping[str, str], key: str, default: int) -> int:
    value = _opt_int(params, key)
    return default if value is None else value


def message_text(content: object) -> str:
    """The text of a message's content: the string itself, or its text parts joined with no separator."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def count_prompt_tokens(messages: list[Any]) -> int:
    """ceil(UTF-8 bytes of all message texts / 4) + 3 per message: deterministic, roughly tiktoken-sized."""
    total_bytes = sum(len(message_text(m.get("content")).encode()) for m in messages if isinstance(m, dict))
    return (total_bytes + 3) // 4 + 3 * len(messages)


def tool_result(messages: list[Any]) -> str | None:
    """The text of the last message when it is a tool result (role "tool"), else None."""
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") == "tool":
        return message_text(last.get("content"))
    return None


def tool_results_since_user(messages: list[Any]) -> int:
    """How many tool results (role "tool") follow the last user message."""
    count = 0
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") == "user":
            break
        count += message.get("role") == "tool"
    return count


def last_user_text(messages: list[Any]) -> str:
    """The text of the last message with role "user", or "" when there is none."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def split_pieces(text: str) -> list[str]:
    """Split into stream pieces, each word with the whitespace before it: "a b" -> ["a", " b"]; joins back to text."""
    pieces = _PIECE.findall(text)
    if not pieces and text:
        return [text]  # whitespace only
    return pieces


def split_fragments(arguments: str) -> list[str]:
    """Split tool-call arguments into fixed-size fragments, as they are streamed."""
    return [arguments[i : i + TOOL_ARGS_FRAGMENT] for i in range(0, len(arguments), TOOL_ARGS_FRAGMENT)]


def requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks the answer to follow: chat's ``response_format`` (``json_schema``) or the
    Responses API's ``text.format``; ``json_object`` asks for any object (the empty schema)."""
    chat = body.get("response_format")
    text = body.get("text")
    wanted = chat if isinstance(chat, dict) else text.get("format") if isinstance(text, dict) else None
    if not isinstance(wanted, dict):
        return None
    if wanted.get("type") == "json_object":
        return {"type": "object"}
    if wanted.get("type") != "json_schema":
        return None
    schema = (
        wanted["json_schema"].get("schema") if isinstance(wanted.get("json_schema"), dict) else wanted.get("schema")
    )
    return schema if isinstance(schema, dict) else {"type": "object"}


def schema_example(schema: object, depth: int = 0) -> Any:
    """A small value that follows ``schema`` (const, enum, the first of anyOf/oneOf, every listed property, one array
    item, ``"example"``, 1, true), so that a structured-output client can parse what the fake answers."""
    if not isinstance(schema, dict) or depth > 16:
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema_example(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and isinstance(schema.get("properties"), dict)):
        properties = schema.get("properties")
        items = properties.items() if isinstance(properties, dict) else ()
        return {name: schema_example(sub, depth + 1) for name, sub in items}
    if kind == "array":
        return [schema_example(schema.get("items"), depth + 1)]
    return {"string": "example", "integer": 1, "number": 1, "boolean": True}.get(str(kind))
