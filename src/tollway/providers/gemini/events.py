"""Gemini stream events onto hub chunks (SPEC §7.4): each SSE object becomes one chunk (parts -> deltas,
``finishReason`` -> the finish chunk), and the last ``usageMetadata`` is the usage. Gemini sends no terminal
event: the stream is complete when the connection ends after a finish reason. Pure; the adapter feeds it.
"""

from __future__ import annotations

from typing import Any

from tollway.domain.pricing import Usage
from tollway.domain.upstream import StreamChunk
from tollway.errors import UpstreamError
from tollway.providers.content import choice_delta
from tollway.providers.gemini.translate import (
    IdFactory,
    candidate_delta,
    error_event,
    finish_reason,
    new_call_id,
    parse_usage,
)
from tollway.providers.streaming import cut, event_json


class EventTranslator:
    finished = False  # Gemini has no terminal event; the stream is read to its end

    def __init__(self, slug: str, new_id: IdFactory = new_call_id) -> None:
        self._slug = slug
        self._new_id = new_id
        self._calls: dict[int, int] = {}  # candidate index -> tool calls streamed so far
        self._finished: set[int] = set()
        self._usage: Usage | None = None
        self._usage_sent = False

    def feed(self, data: bytes) -> list[StreamChunk]:
        event = event_json(data, self._slug)
        if "error" in event:
            raise error_event(event, self._slug)
        metadata = event.get("usageMetadata")
        if isinstance(metadata, dict) and metadata:
            # The last report is the usage: an invalid or absurd one voids the earlier ones, so that the call is
            # estimated (SPEC §9.4) rather than billed from an interim count.
            self._usage, self._usage_sent = parse_usage(metadata), False
        candidates = event.get("candidates")
        if not isinstance(candidates, list):
            feedback = event.get("promptFeedback")
            if isinstance(feedback, dict) and feedback.get("blockReason"):
                self._finished.add(0)
                return self._emit([choice_delta(0, {}, "content_filter")], finishing=True)
            return []
        choices = []
        finishing = False
        for position, candidate in enumerate(candidates):
            if not isinstance(candidate, dict):
                raise UpstreamError(f"Upstream provider '{self._slug}' sent a malformed candidate.")
            index = candidate.get("index", position)
            index = index if isinstance(index, int) else position
            called = self._calls.get(index, 0)
            delta = candidate_delta(candidate, self._new_id, called)
            self._calls[index] = called + len(delta.get("tool_calls", ()))
            reason = candidate.get("finishReason")
            finish = finish_reason(reason, self._calls[index] > 0) if reason else None
            if finish is not None:
                self._finished.add(index)
                finishing = True
            choices.append(choice_delta(index, delta, finish))
        return self._emit(choices, finishing)

    def _emit(self, choices: list[dict[str, Any]], finishing: bool) -> list[StreamChunk]:
        # Usage goes out with a finish chunk: an interim usageMetadata (prompt count only) must not be billed if
        # the stream is cut before the end.
        usage = self._usage if finishing else None
        if usage is not None:
            self._usage_sent = True
        return [StreamChunk({"choices": choices}, usage)]

    def end(self) -> list[StreamChunk]:
        if not self._finished:
            raise cut(self._slug)
        if self._usage is not None and not self._usage_sent:
            return [StreamChunk({"choices": []}, self._usage)]
        return []
