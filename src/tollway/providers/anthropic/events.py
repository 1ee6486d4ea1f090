"""Anthropic stream events onto hub chunks (SPEC §7.4): text_delta -> content, input_json_delta -> tool-call
argument deltas, thinking_delta -> reasoning_content, message_delta -> the finish chunk with usage, message_stop ends
the stream, ping is skipped, error raises. Signatures and redacted_thinking blocks ride beside the chunks (for
/v1/messages). Pure; the adapter feeds it SSE payloads.
"""

from __future__ import annotations

from typing import Any

from tollway.domain.upstream import StreamChunk
from tollway.errors import UpstreamError
from tollway.providers.anthropic import wire
from tollway.providers.anthropic.translate import finish_reason, parse_usage, read_error
from tollway.providers.base import upstream_failure
from tollway.providers.content import choice_delta
from tollway.providers.streaming import cut, event_json


def _chunk(delta: dict[str, Any]) -> list[StreamChunk]:
    return [StreamChunk({"choices": [choice_delta(0, delta)]}, None)]


class EventTranslator:
    def __init__(self, slug: str) -> None:
        self._slug = slug
        self._usage: dict[str, Any] = {}  # message_start's usage, updated by message_delta's cumulative counts
        self._tool_index: dict[int, int] = {}  # content block index -> tool_calls index
        self.finished = False

    def feed(self, data: bytes) -> list[StreamChunk]:
        event = event_json(data, self._slug)
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "content_block_start":
            return self._start(event)
        if kind == "message_start":
            message = event.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._usage.update(usage)
            return []
        if kind == "message_delta":
            return self._finish(event)
        if kind == "message_stop":
            self.finished = True
            return []
        if kind == "error":
            raise self._error(event.get("error"))
        return []  # ping, content_block_stop, and event types added later

    def end(self) -> list[StreamChunk]:
        raise cut(self._slug)

    def _start(self, event: dict[str, Any]) -> list[StreamChunk]:
        block = event.get("content_block")
        if not isinstance(block, dict):
            raise UpstreamError(f"Upstream provider '{self._slug}' sent a malformed content_block_start.")
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return _chunk({"content": block["text"]})
        if kind == "thinking" and block.get("thinking"):
            return _chunk({"reasoning_content": block["thinking"]})
        if kind == "redacted_thinking" and isinstance(block.get("data"), str):
            return [StreamChunk({"choices": []}, None, redacted_thinking=block["data"])]
        if kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise UpstreamError(f"Upstream provider '{self._slug}' sent a malformed tool_use block.")
            position = len(self._tool_index)
            index = event.get("index")
            self._tool_index[index if isinstance(index, int) else -1 - position] = position
            call = {
                "index": position,
                "id": block["id"],
                "type": "function",
                "function": {"name": block["name"], "arguments": ""},
            }
            return _chunk({"tool_calls": [call]})
        return []

    def _delta(self, event: dict[str, Any]) -> list[StreamChunk]:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            raise UpstreamError(f"Upstream provider '{self._slug}' sent a malformed content_block_delta.")
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            return _chunk({"content": delta["text"]})
        if kind == "input_json_delta" and isinstance(delta.get("partial_json"), str) and delta["partial_json"]:
            index = event.get("index")
            position = self._tool_index.get(index) if isinstance(index, int) else None
            if position is None:
                raise UpstreamError(f"Upstream provider '{self._slug}' sent tool input for an unknown block.")
            return _chunk({"tool_calls": [{"index": position, "function": {"arguments": delta["partial_json"]}}]})
        if kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
            return _chunk({"reasoning_content": delta["thinking"]})
        if kind == "signature_delta" and isinstance(delta.get("signature"), str):
            return [StreamChunk({"choices": []}, None, signature=delta["signature"])]
        return []  # citations_delta

    def _finish(self, event: dict[str, Any]) -> list[StreamChunk]:
        usage = event.get("usage")
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})
        delta = event.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        choice = choice_delta(0, {}, finish_reason(stop_reason))
        matched = delta.get("stop_sequence") if isinstance(delta, dict) and stop_reason == "stop_sequence" else None
        stop_sequence = matched if isinstance(matched, str) and matched else None
        return [StreamChunk({"choices": [choice]}, parse_usage(self._usage), stop_sequence=stop_sequence)]

    def _error(self, error: object) -> UpstreamError:
        kind = error.get("type") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        return upstream_failure(
            f"Upstream provider '{self._slug}' reported an error mid-stream: {kind or 'error'}: {message or 'unknown'}",
            wire.ERROR_STATUSES.get(kind) if isinstance(kind, str) else None,
            read_error({"error": error}),  # a refusal as the first event is the same refusal as an HTTP 400
        )
