"""The fake upstream's answers in OpenAI's chat-completions wire format: JSON bodies, SSE events, error envelopes.

One ``Completion`` renders both ways, so content and usage always agree between stream and non-stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from tollway.fake_upstream.scenarios import (
    DEFAULT_CONTENT,
    KINDS,
    Scenario,
    count_prompt_tokens,
    last_user_text,
    requested_schema,
    schema_example,
    split_fragments,
    split_pieces,
    tool_result,
    tool_results_since_user,
)

FINGERPRINT = "fp_fake"
TOOL_CALL_ID = "call_fake_1"
DONE_EVENT = b"data: [DONE]\n\n"
GARBAGE = b"<html>this is not JSON</html>"

# ``type=context_length_exceeded``: how OpenAI refuses an input longer than the model's context.
CONTEXT_LENGTH: Final = "context_length_exceeded"
OPENAI_CONTEXT_MESSAGE: Final = (
    "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. "
    "Please reduce the length of the messages."
)
# (type, code) of the error envelope per status; type=X in the model string overrides both.
_ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", "conflict"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("requests", "rate_limit_exceeded"),
    503: ("server_error", "service_unavailable"),
}


@dataclass(frozen=True, slots=True)
class Completion:
    """What the fake answers, before rendering: content pieces (or tool-argument fragments) and usage."""

    pieces: tuple[str, ...]
    tool_name: str | None
    finish_reason: str
    choices: int
    usage: dict[str, Any] | None
    reasoning: str | None = None
    hosted: str | None = None  # Responses dialect: a hosted-tool item type answered before the message
    encrypted: bool = False  # Responses dialect: include asked for reasoning.encrypted_content
    # Prompt tokens written to a cache (part of usage.prompt_tokens): only Anthropic's wire format reports them
    # (``cache_creation_input_tokens``); OpenAI's and Gemini's have no such count.
    cache_write_tokens: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The fields every completion object and chunk repeats."""

    id: str
    created: int
    model: str
    serial: int = 0  # the request's number, for dialects that shape their own ids


class Dialect(Protocol):
    """One upstream wire format the fake speaks: how requests read and how answers and errors are written."""

    def neutral_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The request as an OpenAI-style body (``messages``, ``n``, ``max_tokens``), for build_completion."""
        ...

    def render_completion(self, completion: Completion, envelope: Envelope) -> bytes: ...

    def render_stream(
        self, completion: Completion, envelope: Envelope, *, include_usage: bool, cut_after: int | None
    ) -> list[bytes]:
        """The SSE events, terminator included; with ``cut_after``, only the first pieces (no terminator)."""
        ...

    def render_error(self, status: int, message: str, error_type: str | None, param: str | None = None) -> bytes:
        """The error body; ``error_type`` ``context_length_exceeded`` is the dialect's own refusal of a too-long
        input, and ``param`` is named the way the dialect names a parameter."""
        ...

    def render_error_event(self, status: int, message: str, error_type: str | None) -> bytes: ...


def build_completion(scenario: Scenario, body: dict[str, Any]) -> Completion:
    """Decide content, finish reason and usage for a chat request, honouring n and max(_completion)_tokens."""
    messages: list[Any] = body.get("messages") or []
    choices = body.get("n")
    choices = choices if isinstance(choices, int) and not isinstance(choices, bool) and choices > 0 else 1
    finish_reason = "length" if scenario.kind == "length" else "stop"
    tool_name: str | None = None
    calls_tool = scenario.kind == "tool-call" or (
        scenario.kind == "agent" and tool_results_since_user(messages) < scenario.calls
    )
    if calls_tool:
        tool_name, finish_reason = scenario.tool_name, "tool_calls"
        pieces = split_fragments(scenario.tool_args)
    else:
        schema = requested_schema(body) if scenario.kind == "default" else None
        text = _content(scenario, messages) if schema is None else orjson.dumps(schema_example(schema)).decode()
        pieces = split_pieces(text)
        limit = _max_tokens(body)
        if limit is not None and limit < len(pieces):
            pieces, finish_reason = pieces[:limit], "length"
    usage = None
    if not scenario.no_usage:
        prompt = count_prompt_tokens(messages) if scenario.prompt_tokens is None else scenario.prompt_tokens
        # Reasoning tokens are part of the completion tokens, as OpenAI counts them.
        counted = len(pieces) * choices + scenario.reasoning_tokens
        completion = counted if scenario.completion_tokens is None else scenario.completion_tokens
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": scenario.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": scenario.reasoning_tokens},
        }
    encrypted = body.get("encrypted_reasoning") is True
    return Completion(
        tuple(pieces),
        tool_name,
        finish_reason,
        choices,
        usage,
        scenario.thought,
        scenario.hosted,
        encrypted,
        scenario.cache_write_tokens,
    )


def _content(scenario: Scenario, messages: list[Any]) -> str:
    if scenario.kind == "echo":
        return last_user_text(messages)
    if scenario.kind == "agent":
        return f"The tool returned: {_last_tool_result(messages)}"
    if scenario.words is not None:
        return " ".join(f"w{i}" for i in range(1, scenario.words + 1))
    return DEFAULT_CONTENT


def _last_tool_result(messages: list[Any]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "tool":
            return tool_result([message])
    return None


def _max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def render_completion(completion: Completion, envelope: Envelope) -> bytes:
    """The non-stream ``chat.completion`` body."""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(completion.pieces), "refusal": None}
    if completion.reasoning is not None:
        message["reasoning_content"] = completion.reasoning
    if completion.tool_name is not None:
        message["content"] = None
        message["tool_calls"] = [_tool_call(completion.tool_name, "".join(completion.pieces))]
    choice = {"message": message, "logprobs": None, "finish_reason": completion.finish_reason}
    payload: dict[str, Any] = {
        "id": envelope.id,
        "object": "chat.completion",
        "created": envelope.created,
        "model": envelope.model,
        "choices": [{"index": i, **choice} for i in range(completion.choices)],
    }
    if completion.usage is not None:
        payload["usage"] = completion.usage
    payload["system_fingerprint"] = FINGERPRINT
    return orjson.dumps(payload)


def _tool_call(name: str, arguments: str) -> dict[str, Any]:
    return {"id": TOOL_CALL_ID, "type": "function", "function": {"name": name, "arguments": arguments}}


def render_stream(
    completion: Completion, envelope: Envelope, *, include_usage: bool, cut_after: int | None = None
) -> list[bytes]:
    """The SSE events of a streamed answer, ``[DONE]`` included; with cut_after, only up to that many pieces."""
    head = {
        "id": envelope.id,
        "object": "chat.completion.chunk",
        "created": envelope.created,
        "model": envelope.model,
        "system_fingerprint": FINGERPRINT,
    }
    # Every chunk repeats the same envelope, so it is serialised once: `{...head,"choices":[` + choice + `]...}`.
    prefix = b"data: " + orjson.dumps(head)[:-1] + b',"choices":['
    # OpenAI sends "usage": null on every chunk but the last when usage is asked for, and no key otherwise.
    suffix = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"

    def event(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return prefix + orjson.dumps(choice) + suffix

    indexes = range(completion.choices)
    deltas: list[dict[str, Any]]
    if completion.tool_name is None:
        events = [event(i, {"role": "assistant", "content": ""}) for i in indexes]
        deltas = [{"content": piece} for piece in completion.pieces]
    else:
        first = {"index": 0, **_tool_call(completion.tool_name, "")}
        events = [event(i, {"role": "assistant", "content": None, "tool_calls": [first]}) for i in indexes]
        deltas = [{"tool_calls": [{"index": 0, "function": {"arguments": f}}]} for f in completion.pieces]
    if cut_after is not None:
        deltas = deltas[:cut_after]
    if completion.reasoning is not None:
        deltas.insert(0, {"reasoning_content": completion.reasoning})
    events += [event(i, delta) for delta in deltas for i in indexes]
    if cut_after is not None:
        return events
    events += [event(i, {}, completion.finish_reason) for i in indexes]
    if include_usage and completion.usage is not None:
        events.append(prefix + b'],"usage":' + orjson.dumps(completion.usage) + b"}\n\n")
    events.append(DONE_EVENT)
    return events


def error_fields(status: int, error_type: str | None) -> tuple[str, str]:
    """The (type, code) of the error envelope for a status, or (error_type, error_type) when one is given."""
    if error_type:
        return error_type, error_type
    default = ("server_error", "server_error") if status >= 500 else ("invalid_request_error", "invalid_request")
    return _ERROR_KINDS.get(status, default)


def render_error(message: str, error_type: str, code: str, param: str | None = None) -> bytes:
    """OpenAI's error envelope; ``code`` is always a string."""
    return orjson.dumps({"error": {"message": message, "type": error_type, "code": code, "param": param}})


def render_scenario_error(
    status: int,
    message: str,
    error_type: str | None,
    param: str | None,
    context: tuple[str, str] = (OPENAI_CONTEXT_MESSAGE, "messages"),
) -> bytes:
    """OpenAI's envelope for an ``error`` scenario; ``type=context_length_exceeded`` gives OpenAI's real refusal
    (``context``: its message and param), whatever the status."""
    if error_type == CONTEXT_LENGTH:
        return render_error(context[0], "invalid_request_error", CONTEXT_LENGTH, param or context[1])
    return render_error(message, *error_fields(status, error_type), param)


def render_error_event(message: str, error_type: str, code: str) -> bytes:
    """A mid-stream error, as OpenAI sends it once the 200 has gone out."""
    return b"data: " + render_error(message, error_type, code) + b"\n\n"


def render_models(created: int) -> bytes:
    """The ``GET /v1/models`` list: one model per behaviour."""
    data: list[dict[str, object]] = [
        {"id": f"fake/{kind}", "object": "model", "created": created, "owned_by": "tollway-fake"} for kind in KINDS
    ]
    return orjson.dumps({"object": "list", "data": data})


class OpenAIDialect:
    """OpenAI's chat completions (``/v1/chat/completions``), the fake's native format."""

    def neutral_body(self, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def render_completion(self, completion: Completion, envelope: Envelope) -> bytes:
        return render_completion(completion, envelope)

    def render_stream(
        self, completion: Completion, envelope: Envelope, *, include_usage: bool, cut_after: int | None
    ) -> list[bytes]:
        return render_stream(completion, envelope, include_usage=include_usage, cut_after=cut_after)

    def render_error(self, status: int, message: str, error_type: str | None, param: str | None = None) -> bytes:
        return render_scenario_error(status, message, error_type, param)

    def render_error_event(self, status: int, message: str, error_type: str | None) -> bytes:
        return render_error_event(message, *error_fields(status, error_type))
