"""How a chat-kind answer is shaped for its client: the hub result (an OpenAI chat.completion and its chunks) is what
the chat lifecycle runs on; a shape renders it for the inbound API that was called. ``OPENAI_CHAT`` is
/v1/chat/completions (SPEC §7.3); ``domain/messages_output.py`` is Anthropic's Messages API (SPEC §19). Pure.
"""

from __future__ import annotations

import os
import time
from typing import Any, Final, Protocol

from tollway.domain.chat_request import ChatRequest
from tollway.domain.pricing import Usage
from tollway.domain.upstream import ChatResult, StreamChunk
from tollway.domain.usage import usage_json, with_cost


class ChunkShaper(Protocol):
    """The events of one stream: ``opening`` before the first chunk, ``shape`` per hub chunk, ``closing`` with the
    billed usage and the caller's cost (SPEC §19 ``usage.cost``) after a normal end. An error ends a stream without
    ``closing``."""

    def opening(self) -> list[dict[str, Any]]: ...

    def shape(self, chunk: StreamChunk) -> list[dict[str, Any]]: ...

    def closing(self, usage: Usage, cost_nanos: int) -> list[dict[str, Any]]: ...


class ChatShape(Protocol):
    def completion(self, request: ChatRequest, result: ChatResult, usage: Usage, cost_nanos: int) -> dict[str, Any]: ...

    def chunks(self, request: ChatRequest) -> ChunkShaper: ...


def has_output(choice: dict[str, Any]) -> bool:
    """A chunk choice that carries something beyond the role: a finish, logprobs or non-empty delta fields."""
    return bool(
        choice.get("finish_reason")
        or choice.get("logprobs")
        or any(k != "role" and v not in (None, "") for k, v in choice["delta"].items())
    )


_RESERVED_KEYS: Final = frozenset({"id", "object", "created", "model", "choices", "usage"})


def extensions(upstream: dict[str, Any]) -> dict[str, Any]:
    """Top-level fields an adapter chose to keep (ASI:One's thought, executed_tool_calls, ...), §7.3, §7.5."""
    if len(upstream) == 1:
        return {}
    return {k: v for k, v in upstream.items() if k not in _RESERVED_KEYS}


def _completion_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


def _empty_deltas(count: int) -> list[dict[str, Any]]:
    return [{"index": i, "delta": {}, "logprobs": None, "finish_reason": None} for i in range(count)]


class OpenAIChat:
    """chat.completion and chat.completion.chunk objects (SPEC §7.3)."""

    def completion(self, request: ChatRequest, result: ChatResult, usage: Usage, cost_nanos: int) -> dict[str, Any]:
        return {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": result.body["choices"],
            "usage": with_cost(usage_json(usage), cost_nanos),
            **extensions(result.body),
        }

    def chunks(self, request: ChatRequest) -> ChunkShaper:
        return OpenAIChunks(request)


class OpenAIChunks:
    """Chunks in the OpenAI shape: the same id, created and model everywhere; usage only when asked for."""

    def __init__(self, request: ChatRequest) -> None:
        self._base = {"id": _completion_id(), "object": "chat.completion.chunk", "created": int(time.time())}
        self._base["model"] = request.model
        self._n = request.n
        self._include_usage = request.include_usage
        self._usage_field: dict[str, Any] = {"usage": None} if request.include_usage else {}

    def opening(self) -> list[dict[str, Any]]:
        choices = [
            {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
            for i in range(self._n)
        ]
        return [{**self._base, "choices": choices, **self._usage_field}]

    def shape(self, chunk: StreamChunk) -> list[dict[str, Any]]:
        added = extensions(chunk.chunk)
        choices: list[dict[str, Any]] = chunk.chunk["choices"]
        if choices:
            # Our own first chunk carries the role; an upstream's role-only opening delta would repeat it.
            kept = [c for c in choices if has_output(c)]
            if kept:
                return [{**self._base, "choices": kept, **self._usage_field, **added}]
            if added:
                return [{**self._base, "choices": _empty_deltas(self._n), **self._usage_field, **added}]
        elif added:
            # A chunk carrying only extension fields (ASI:One thought events) keeps one empty delta (§7.5).
            return [{**self._base, "choices": _empty_deltas(1), **self._usage_field, **added}]
        return []

    def closing(self, usage: Usage, cost_nanos: int) -> list[dict[str, Any]]:
        if not self._include_usage:
            return []
        return [{**self._base, "choices": [], "usage": with_cost(usage_json(usage), cost_nanos)}]


OPENAI_CHAT: Final = OpenAIChat()
