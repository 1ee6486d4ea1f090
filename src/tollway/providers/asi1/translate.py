"""Pure translation for ASI:One (kind asi1): the OpenAI dialect plus ASI:One's request extensions and the
normalisation of its responses and chunks, old shapes included, into valid OpenAI objects (SPEC §7.5).

- ``object`` and ``index`` are added when missing; ``created`` in milliseconds (> 10¹¹) becomes seconds.
- Choice-level ``role``, ``stop_reason`` and ``matched_stop`` are removed; ``message.role`` is forced to
  ``assistant``; ``message.reasoning`` becomes ``reasoning_content`` when that is absent.
- Server-executed tool records ``{id, tool_name, args, result}`` (no ``function``) move from ``tool_calls`` to the
  top-level ``executed_tool_calls``; ``finish_reason: tool_calls`` with no OpenAI-form call left becomes ``stop``.
- ``thought``, ``init_thought``, ``intermediate_steps``, ``executable_data`` and ``conversation_id`` stay at the
  top level; a chunk that carries only those is forwarded by the service with one empty delta.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from tollway.domain.pricing import Usage
from tollway.domain.upstream import ChatResult, StreamChunk
from tollway.errors import UpstreamError
from tollway.providers.content import count
from tollway.providers.openai import translate as openai
from tollway.providers.streaming import event_json

EXTENSIONS: Final = (
    "thought",
    "init_thought",
    "intermediate_steps",
    "executable_data",
    "conversation_id",
    "executed_tool_calls",
)
_CHOICE_DROPPED: Final = ("role", "stop_reason", "matched_stop")
_MILLISECONDS: Final = 10**11


def session_headers(session_id: str | None) -> dict[str, str]:
    """ASI:One takes the caller's session in ``x-session-id`` (rate limits and agent sessions)."""
    return {"x-session-id": session_id} if session_id else {}


def _created(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > _MILLISECONDS:
        return int(value // 1000)
    return value


def _split_calls(calls: object) -> tuple[list[Any], list[Any]]:
    """(OpenAI-form calls, server-executed records) of a ``tool_calls`` value."""
    if not isinstance(calls, list):
        return [], []
    openai_form = [c for c in calls if isinstance(c, dict) and "function" in c]
    executed = [c for c in calls if not (isinstance(c, dict) and "function" in c)]
    return openai_form, executed


def _normalise_message(message: dict[str, Any], executed: list[Any]) -> dict[str, Any]:
    """A message or delta: role forced, ``reasoning`` renamed, executed records moved out (to ``executed``)."""
    message = dict(message)
    if "role" in message:
        message["role"] = "assistant"
    reasoning = message.pop("reasoning", None)
    if message.get("reasoning_content") is None and reasoning is not None:
        message["reasoning_content"] = reasoning
    if "tool_calls" in message:
        calls, ran = _split_calls(message.pop("tool_calls"))
        executed.extend(ran)
        if calls:
            message["tool_calls"] = calls
    return message


def _normalise(raw: dict[str, Any], obj: str, key: str, called: set[int]) -> dict[str, Any]:
    """The shared normalisation of a completion (``key`` message) or a chunk (``key`` delta)."""
    body = dict(raw)
    body.setdefault("object", obj)
    if "created" in body:
        body["created"] = _created(body["created"])
    executed: list[Any] = []
    choices = body.get("choices")
    if isinstance(choices, list):
        normalised = []
        for position, raw_choice in enumerate(choices):
            if not isinstance(raw_choice, dict):
                normalised.append(raw_choice)
                continue
            choice = {k: v for k, v in raw_choice.items() if k not in _CHOICE_DROPPED}
            if not isinstance(choice.get("index"), int):
                choice["index"] = position
            content = choice.get(key)
            if key == "delta" and not isinstance(content, dict):
                content = choice.pop("message", None)  # some old chunks carry a message instead of a delta
            if isinstance(content, dict):
                choice[key] = _normalise_message(content, executed)
                if choice[key].get("tool_calls"):
                    called.add(choice["index"])
            if choice.get("finish_reason") == "tool_calls" and choice["index"] not in called:
                choice["finish_reason"] = "stop"
            normalised.append(choice)
        body["choices"] = normalised
    if executed:
        body["executed_tool_calls"] = executed
    return body


def normalise_completion(raw: dict[str, Any]) -> dict[str, Any]:
    """An ASI:One chat.completion, old shapes included, as a valid OpenAI chat.completion plus extensions."""
    body = _normalise(raw, "chat.completion", "message", set())
    for choice in body.get("choices") or ():
        if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
            choice["message"]["role"] = "assistant"
    return body


def normalise_chunk(raw: dict[str, Any], called: set[int]) -> dict[str, Any]:
    """One ASI:One chunk as a valid OpenAI chat.completion.chunk plus extensions. ``called`` holds the choice
    indexes that streamed an OpenAI-form tool call so far (the finish reason depends on the whole stream)."""
    return _normalise(raw, "chat.completion.chunk", "delta", called)


def parse_usage(raw: Any) -> Usage | None:
    """OpenAI usage; ASI:One may report reasoning tokens at the top level of ``usage``."""
    usage = openai.parse_usage(raw)
    if usage is not None and usage.reasoning_tokens is None and isinstance(raw, dict):
        reasoning = count(raw.get("reasoning_tokens"))
        if reasoning is not None:
            usage = dataclasses.replace(usage, reasoning_tokens=reasoning)
    return usage


def extensions(body: dict[str, Any]) -> dict[str, Any]:
    return {key: body[key] for key in EXTENSIONS if body.get(key) is not None}


def completion_result(raw: dict[str, Any], slug: str) -> ChatResult:
    body = normalise_completion(raw)
    choices, _ = openai.normalise_completion(body, slug)
    return ChatResult({"choices": choices, **extensions(body)}, parse_usage(body.get("usage")))


class ChunkTranslator:
    """ASI:One streams: OpenAI chunks (``[DONE]`` ends them) normalised one by one, extension-only events kept."""

    def __init__(self, slug: str) -> None:
        self._slug = slug
        self._called: set[int] = set()
        self.finished = False

    def feed(self, data: bytes) -> list[StreamChunk]:
        if data == b"[DONE]":
            self.finished = True
            return []
        raw = event_json(data, self._slug)
        openai.raise_for_error_event(raw, self._slug)
        body = normalise_chunk(raw, self._called)
        choices, _ = openai.normalise_chunk(body, self._slug)
        return [StreamChunk({"choices": choices, **extensions(body)}, parse_usage(body.get("usage")))]

    def end(self) -> list[StreamChunk]:
        raise UpstreamError(f"Upstream provider '{self._slug}' ended the stream early.")
