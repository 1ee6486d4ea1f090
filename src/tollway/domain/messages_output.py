"""The hub answer rendered as Anthropic's Messages API (SPEC §19): a ``message`` object, or the stream events
``message_start``, ``ping``, ``content_block_start|delta|stop``, ``message_delta`` (stop reason and usage) and
``message_stop``. Pure.

Content blocks, in order: thinking (the provider's own blocks with their signatures when it is Anthropic, else one
block from ``reasoning_content`` with an empty signature), text, tool_use (arguments parsed back into ``input``).
``finish_reason`` stop/length/tool_calls/content_filter -> ``stop_reason`` end_turn (stop_sequence when the provider
named the sequence)/max_tokens/tool_use/refusal. Usage: ``input_tokens`` = prompt − cache reads − cache writes.
"""

from __future__ import annotations

import os
from typing import Any, Final

import orjson

from tollway.domain.chat_request import ChatRequest
from tollway.domain.pricing import Usage
from tollway.domain.upstream import ChatResult, StreamChunk
from tollway.domain.usage import with_cost
from tollway.errors import TollwayError

STOP_REASONS: Final[dict[str, str]] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def message_id() -> str:
    return "msg_" + os.urandom(12).hex()


def stop_reason(finish_reason: str | None, stop_sequence: str | None) -> str:
    if finish_reason == "stop" and stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


def usage_json(usage: Usage) -> dict[str, Any]:
    """Anthropic's usage object for billed counts (the three input counts add up to the prompt tokens)."""
    cache_write = min(usage.cache_write_tokens, usage.prompt_tokens - usage.cached_tokens)
    return {
        "input_tokens": usage.prompt_tokens - usage.cached_tokens - cache_write,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
    }


def tool_input(arguments: object) -> dict[str, Any]:
    """Tool-call arguments as the ``input`` object; arguments that are not a JSON object become ``{}``."""
    if isinstance(arguments, str):
        try:
            value = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return {}
        if isinstance(value, dict):
            return value
    return {}


def _thinking_block(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": text, "signature": ""}


def content_blocks(message: dict[str, Any], thinking: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = list(thinking)
    reasoning = message.get("reasoning_content")
    if not blocks and isinstance(reasoning, str) and reasoning:
        blocks.append(_thinking_block(reasoning))
    text = message.get("content")
    if not isinstance(text, str):
        text = message.get("refusal")
    if isinstance(text, str) and text:
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call["function"]
        blocks.append(
            {"type": "tool_use", "id": call["id"], "name": function["name"], "input": tool_input(function["arguments"])}
        )
    return blocks


class MessagesShape:
    """The ``ChatShape`` of /v1/messages."""

    def completion(self, request: ChatRequest, result: ChatResult, usage: Usage, cost_nanos: int) -> dict[str, Any]:
        choices: list[dict[str, Any]] = result.body["choices"]
        choice: dict[str, Any] = choices[0] if choices else {"message": {}, "finish_reason": "stop"}
        return {
            "id": message_id(),
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": content_blocks(choice["message"], result.thinking),
            "stop_reason": stop_reason(choice.get("finish_reason"), result.stop_sequence),
            "stop_sequence": result.stop_sequence,
            "usage": with_cost(usage_json(usage), cost_nanos),
        }

    def chunks(self, request: ChatRequest) -> MessagesStream:
        return MessagesStream(request.model)


MESSAGES: Final = MessagesShape()


class MessagesStream:
    """Hub chunks as Anthropic events. Blocks are opened as content arrives and closed when another kind of content
    starts, at the finish, or at the end; ``message_delta`` waits for the end, where the billed usage is known."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._open: str | None = None  # the kind of the block being streamed
        self._next = 0  # the index of the next block
        self._tools: dict[int, tuple[int, str]] = {}  # hub tool-call index -> (block index, call id)
        self._finish: str | None = None
        self._stop_sequence: str | None = None

    def opening(self) -> list[dict[str, Any]]:
        message: dict[str, Any] = {
            "id": message_id(),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def shape(self, chunk: StreamChunk) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if chunk.redacted_thinking is not None:
            self._start(events, "redacted_thinking", {"type": "redacted_thinking", "data": chunk.redacted_thinking})
        for choice in chunk.chunk["choices"]:
            if choice.get("index", 0) != 0:
                continue  # /v1/messages asks for one choice
            delta = choice["delta"]
            reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                if self._open != "thinking":
                    self._start(events, "thinking", _thinking_block(""))
                events.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                if self._open != "text":
                    self._start(events, "text", {"type": "text", "text": ""})
                events.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                self._tool_call(events, call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                self._close(events)
        if chunk.signature is not None and self._open == "thinking":
            events.append(self._delta({"type": "signature_delta", "signature": chunk.signature}))
        if chunk.stop_sequence is not None:
            self._stop_sequence = chunk.stop_sequence
        return events

    def closing(self, usage: Usage, cost_nanos: int) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        self._close(events)
        delta = {"stop_reason": stop_reason(self._finish, self._stop_sequence), "stop_sequence": self._stop_sequence}
        events.append({"type": "message_delta", "delta": delta, "usage": with_cost(usage_json(usage), cost_nanos)})
        events.append({"type": "message_stop"})
        return events

    def _tool_call(self, events: list[dict[str, Any]], call: dict[str, Any]) -> None:
        position = call.get("index", 0)
        function = call.get("function") or {}
        call_id = call.get("id")
        known = self._tools.get(position)
        # A new block for a new call; some OpenAI-compatible servers repeat the id on every delta of the same call.
        if known is None or (call_id is not None and call_id != known[1]):
            name = function.get("name") or ""
            block: dict[str, Any] = {"type": "tool_use", "id": call_id or "", "name": name, "input": {}}
            self._start(events, "tool_use", block)
            known = self._tools[position] = (self._next - 1, call_id or "")
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            events.append({"type": "content_block_delta", "index": known[0], "delta": delta})

    def _start(self, events: list[dict[str, Any]], kind: str, block: dict[str, Any]) -> None:
        self._close(events)
        events.append({"type": "content_block_start", "index": self._next, "content_block": block})
        self._next += 1
        self._open = kind
        if kind == "redacted_thinking":
            self._close(events)

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self._next - 1, "delta": delta}

    def _close(self, events: list[dict[str, Any]]) -> None:
        if self._open is not None:
            events.append({"type": "content_block_stop", "index": self._next - 1})
            self._open = None


def error_type(error: TollwayError) -> str:
    """Anthropic's error type for a §3 error; the HTTP status stays §3's."""
    status = error.status
    if status >= 500:
        return _SERVER_ERROR_TYPES.get(status, "api_error")
    return _CLIENT_ERROR_TYPES.get(status, "invalid_request_error")


def error_body(error: TollwayError, request_id: str | None = None) -> dict[str, Any]:
    """Anthropic's error envelope ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type(error), "message": error.message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


_CLIENT_ERROR_TYPES: Final = {
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}
_SERVER_ERROR_TYPES: Final = {503: "overloaded_error", 504: "timeout_error"}
