"""The fake upstream's Anthropic Messages API dialect (``POST /v1/messages``): message bodies, the SSE event
sequence (message_start, content_block_start/delta/stop with text, input_json and thinking deltas, ping,
message_delta, message_stop, error) and error envelopes, as the official ``anthropic`` SDK types define them.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from tollway.fake_upstream.responses import CONTEXT_LENGTH, Completion, Envelope

SIGNATURE: Final = "fake-signature"
TOOL_USE_ID: Final = "toolu_fake_1"
_STOP_REASONS: Final = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
CONTEXT_MESSAGE: Final = "prompt is too long: 208310 tokens > 200000 maximum"  # type=context_length_exceeded
_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text" and "text" in b)


def _turn_messages(turn: dict[str, Any]) -> list[dict[str, Any]]:
    """A turn as chat messages: a user turn's ``tool_result`` blocks become tool messages (an agent answers them)."""
    content = turn.get("content")
    results = (
        [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if isinstance(content, list)
        else []
    )
    messages: list[dict[str, Any]] = [{"role": "tool", "content": _text(b.get("content"))} for b in results]
    text = _text(content)
    if text or not results:
        messages.append({"role": turn.get("role"), "content": text})
    return messages


def _usage(completion: Completion) -> dict[str, Any] | None:
    usage = completion.usage
    if usage is None:
        return None
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    written = completion.cache_write_tokens
    return {
        "input_tokens": max(0, usage["prompt_tokens"] - cached - written),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": usage["completion_tokens"],
    }


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _event(payload: dict[str, Any]) -> bytes:
    kind: str = payload["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class AnthropicDialect:
    def neutral_body(self, body: dict[str, Any]) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if body.get("system"):
            messages.append({"role": "system", "content": _text(body["system"])})
        for turn in body.get("messages") or ():
            if isinstance(turn, dict):
                messages += _turn_messages(turn)
        return {"messages": messages, "max_tokens": body.get("max_tokens")}

    def _message(self, envelope: Envelope, content: list[dict[str, Any]], stop_reason: str | None) -> dict[str, Any]:
        return {
            "id": f"msg_fake{envelope.serial:012d}",
            "type": "message",
            "role": "assistant",
            "model": envelope.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
        }

    def render_completion(self, completion: Completion, envelope: Envelope) -> bytes:
        content: list[dict[str, Any]] = []
        if completion.reasoning is not None:
            content.append({"type": "thinking", "thinking": completion.reasoning, "signature": SIGNATURE})
        if completion.tool_name is not None:
            tool_input = _tool_input(completion.text)
            content.append({"type": "tool_use", "id": TOOL_USE_ID, "name": completion.tool_name, "input": tool_input})
        else:
            content.append({"type": "text", "text": completion.text})
        message = self._message(envelope, content, _STOP_REASONS[completion.finish_reason])
        usage = _usage(completion)
        if usage is not None:
            message["usage"] = usage
        return orjson.dumps(message)

    def render_stream(
        self, completion: Completion, envelope: Envelope, *, include_usage: bool, cut_after: int | None
    ) -> list[bytes]:
        usage = _usage(completion)
        start = self._message(envelope, [], None)
        if usage is not None:
            start["usage"] = {**usage, "output_tokens": 1}
        events = [_event({"type": "message_start", "message": start})]
        index = 0
        if completion.reasoning is not None:
            thinking = {"type": "thinking", "thinking": "", "signature": ""}
            events += [
                _event({"type": "content_block_start", "index": index, "content_block": thinking}),
                _event({"type": "ping"}),
                _delta(index, {"type": "thinking_delta", "thinking": completion.reasoning}),
                _delta(index, {"type": "signature_delta", "signature": SIGNATURE}),
                _event({"type": "content_block_stop", "index": index}),
            ]
            index += 1
        if completion.tool_name is not None:
            block: dict[str, Any] = {"type": "tool_use", "id": TOOL_USE_ID, "name": completion.tool_name, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in completion.pieces]
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in completion.pieces]
        events.append(_event({"type": "content_block_start", "index": index, "content_block": block}))
        if index == 0:
            events.append(_event({"type": "ping"}))
        if cut_after is not None:
            return events + [_delta(index, d) for d in deltas[:cut_after]]
        events += [_delta(index, d) for d in deltas]
        events.append(_event({"type": "content_block_stop", "index": index}))
        delta = {"stop_reason": _STOP_REASONS[completion.finish_reason], "stop_sequence": None}
        final: dict[str, Any] = {"type": "message_delta", "delta": delta}
        if usage is not None:
            final["usage"] = {"output_tokens": usage["output_tokens"]}
        events += [_event(final), _event({"type": "message_stop"})]
        return events

    def render_error(self, status: int, message: str, error_type: str | None, param: str | None = None) -> bytes:
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        text = f"{message} ({error_type})" if error_type else message
        if error_type == CONTEXT_LENGTH:
            text = CONTEXT_MESSAGE
        elif param:
            text = f"{param}: {text}"  # Anthropic names the field as the message's prefix
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": text}})

    def render_error_event(self, status: int, message: str, error_type: str | None) -> bytes:
        return b"event: error\ndata: " + self.render_error(status, message, error_type) + b"\n\n"


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event({"type": "content_block_delta", "index": index, "delta": delta})
