"""The Responses result (SPEC §7.6) built from the hub's chat shapes: a chat.completion choice becomes ``output``
items, and a stream of chat.completion.chunk choices becomes the ``response.*`` event sequence the openai SDK
parses (``ResponseEventStream``). Pure; no I/O.
"""

from __future__ import annotations

import os
from typing import Any

from tollway.domain.pricing import Usage

_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_response_id() -> str:
    return "resp_" + os.urandom(16).hex()


def _item_id(prefix: str) -> str:
    return prefix + "_" + os.urandom(12).hex()


def status_of(finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    """``completed``, or ``incomplete`` with its reason (``max_output_tokens`` or ``content_filter``)."""
    reason = _INCOMPLETE_REASONS.get(finish_reason or "")
    return ("completed", None) if reason is None else ("incomplete", {"reason": reason})


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": usage.total_tokens,
    }


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": [part]}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def output_of_choice(choice: dict[str, Any]) -> tuple[list[dict[str, Any]], str, dict[str, str] | None]:
    """A chat.completion choice as (output items, status, incomplete_details)."""
    status, incomplete = status_of(choice.get("finish_reason"))
    item_status = "completed" if status == "completed" else "incomplete"
    message = choice["message"]
    output: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, str) and content:
        output.append(message_item(_item_id("msg"), content, item_status))
    for call in message.get("tool_calls") or ():
        function = call["function"]
        output.append(
            function_call_item(_item_id("fc"), call["id"], function["name"], function["arguments"], "completed")
        )
    return output, status, incomplete


class ResponseEventStream:
    """Turns hub chunk choices into ``response.*`` events with increasing ``sequence_number``.

    Items are opened as content arrives (a message for text, one function_call per tool-call index) and all
    closed at the end, in output order, before the terminal event."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response  # the result object; ``output``, ``status`` and ``usage`` are filled in here
        self._sequence = 0
        self._items: list[dict[str, Any]] = []  # open items, in output order
        self._message: dict[str, Any] | None = None
        self._calls: dict[int, dict[str, Any]] = {}  # chunk tool-call index -> function_call item
        self.delivered_bytes = 0

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def opening(self) -> list[dict[str, Any]]:
        snapshot = {**self.response, "status": "in_progress", "output": []}
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def feed(self, delta: dict[str, Any]) -> list[dict[str, Any]]:
        """The events of one choice's delta (text, tool-call starts and argument fragments)."""
        events: list[dict[str, Any]] = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            events += self._text(text)
        for call in delta.get("tool_calls") or ():
            events += self._call(call)
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str):
            self.delivered_bytes += len(reasoning.encode())
        return events

    def _text(self, text: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        message = self._message
        if message is None:
            message = self._message = message_item(_item_id("msg"), "", "in_progress")
            message["content"] = []
            index = len(self._items)
            self._items.append(message)
            events.append(self._event("response.output_item.added", output_index=index, item=_copy(message)))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            message["content"].append(part)
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=message["id"],
                    output_index=index,
                    content_index=0,
                    part=dict(part),
                )
            )
        message["content"][0]["text"] += text
        self.delivered_bytes += len(text.encode())
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=message["id"],
                output_index=self._items.index(message),
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        key = call.get("index", 0)
        function = call.get("function") or {}
        item = self._calls.get(key)
        if item is None:
            name = function.get("name") or ""
            item = function_call_item(_item_id("fc"), call.get("id") or _item_id("call"), name, "", "in_progress")
            self._calls[key] = item
            self._items.append(item)
            self.delivered_bytes += len(name.encode())
            events.append(self._event("response.output_item.added", output_index=len(self._items) - 1, item=dict(item)))
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            item["arguments"] += fragment
            self.delivered_bytes += len(fragment.encode())
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self._items.index(item),
                    delta=fragment,
                )
            )
        return events

    def _close_items(self, item_status: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for index, item in enumerate(self._items):
            if item["type"] == "message":
                part = item["content"][0]
                events.append(
                    self._event(
                        "response.output_text.done",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        text=part["text"],
                        logprobs=[],
                    )
                )
                events.append(
                    self._event(
                        "response.content_part.done",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        part=dict(part),
                    )
                )
                item["status"] = item_status
            else:
                events.append(
                    self._event(
                        "response.function_call_arguments.done",
                        item_id=item["id"],
                        output_index=index,
                        name=item["name"],
                        arguments=item["arguments"],
                    )
                )
                item["status"] = "completed"
            events.append(self._event("response.output_item.done", output_index=index, item=_copy(item)))
        return events

    def finish(self, finish_reason: str | None, usage: Usage) -> list[dict[str, Any]]:
        """Close every item, then the terminal ``response.completed`` or ``response.incomplete``."""
        status, incomplete = status_of(finish_reason)
        events = self._close_items("completed" if status == "completed" else "incomplete")
        self.response.update(
            status=status,
            incomplete_details=incomplete,
            usage=usage_json(usage),
            output=[_copy(i) for i in self._items],
        )
        events.append(self._event(f"response.{status}", response=self.response))
        return events

    def fail(self, code: str, message: str) -> list[dict[str, Any]]:
        """The terminal ``response.failed`` after an upstream failure mid-stream (SPEC §7.6)."""
        self.response.update(
            status="failed", error={"code": code, "message": message}, output=[_copy(i) for i in self._items]
        )
        return [self._event("response.failed", response=self.response)]


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    copied = dict(item)
    if "content" in copied:
        copied["content"] = [dict(part) for part in copied["content"]]
    return copied
