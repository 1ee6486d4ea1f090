"""The Responses result (SPEC §7.6) built from the hub's chat shapes: a chat.completion choice becomes ``output``
items, and a stream of chat.completion.chunk choices becomes the ``response.*`` event sequence the openai SDK
parses (``ResponseEventStream``). Pure; no I/O.

With ``reasoning.summary`` the hub's ``reasoning_content`` becomes a ``reasoning`` item with one ``summary_text``
part (streamed as ``response.reasoning_summary_*`` events); chat ``logprobs`` become the ``logprobs`` of the
``output_text`` part; stream events of items Tollway does not model are passed through in sequence (SPEC §7.6).
"""

from __future__ import annotations

import copy
import os
from typing import Any

from tollway.domain.pricing import Usage
from tollway.domain.usage import with_cost

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


def message_item(item_id: str, text: str, status: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": [part]}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str, extra: object = None
) -> dict[str, Any]:
    """A ``function_call`` item; ``extra`` is the call's provider state (a Gemini thought signature), kept so
    that it goes back upstream with the call on the next turn."""
    item: dict[str, Any] = {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }
    if isinstance(extra, dict):
        item["extra_content"] = extra
    return item


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    """The hub's reasoning content as a Responses ``reasoning`` item with one ``summary_text`` part."""
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def output_logprobs(logprobs: object) -> list[dict[str, Any]]:
    """Chat ``logprobs.content`` entries as Responses output-text logprobs."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    return [_logprob(entry, True) for entry in content or () if isinstance(entry, dict)]


def _logprob(entry: dict[str, Any], nested: bool) -> dict[str, Any]:
    out = {"token": entry.get("token", ""), "logprob": entry.get("logprob", 0.0), "bytes": entry.get("bytes") or []}
    if nested:
        out["top_logprobs"] = [_logprob(top, False) for top in entry.get("top_logprobs") or () if isinstance(top, dict)]
    return out


def output_of_choice(
    choice: dict[str, Any], summary: bool = False
) -> tuple[list[dict[str, Any]], str, dict[str, str] | None]:
    """A chat.completion choice as (output items, status, incomplete_details); with ``summary`` its reasoning
    content comes first as a ``reasoning`` item."""
    status, incomplete = status_of(choice.get("finish_reason"))
    item_status = "completed" if status == "completed" else "incomplete"
    message = choice["message"]
    output: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if summary and isinstance(reasoning, str) and reasoning:
        output.append(reasoning_item(_item_id("rs"), reasoning))
    content = message.get("content")
    if isinstance(content, str) and content:
        logprobs = output_logprobs(choice.get("logprobs"))
        output.append(message_item(_item_id("msg"), content, item_status, logprobs))
    for call in message.get("tool_calls") or ():
        function = call["function"]
        output.append(
            function_call_item(
                _item_id("fc"),
                call["id"],
                function["name"],
                function["arguments"],
                "completed",
                call.get("extra_content"),
            )
        )
    return output, status, incomplete


class ResponseEventStream:
    """Turns hub chunk choices into ``response.*`` events with increasing ``sequence_number``.

    Items are opened as content arrives (a message for text, one function_call per tool-call index) and all
    closed at the end, in output order, before the terminal event."""

    def __init__(self, response: dict[str, Any], summary: bool = False) -> None:
        self.response = response  # the result object; ``output``, ``status`` and ``usage`` are filled in here
        self._summary = summary  # reasoning content becomes a reasoning item (reasoning.summary)
        self._sequence = 0
        self._items: list[dict[str, Any]] = []  # open items, in output order
        self._message: dict[str, Any] | None = None
        self._reasoning: dict[str, Any] | None = None  # the open reasoning item, until another item opens
        self._calls: dict[int, dict[str, Any]] = {}  # chunk tool-call index -> function_call item
        self._foreign: dict[int, dict[str, Any]] = {}  # upstream output_index -> passed-through item
        self._done: set[int] = set()  # id() of items already closed
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

    def feed(self, delta: dict[str, Any], logprobs: object = None) -> list[dict[str, Any]]:
        """The events of one choice's delta (reasoning, text, tool-call starts and argument fragments)."""
        events: list[dict[str, Any]] = []
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str):
            self.delivered_bytes += len(reasoning.encode())
            if self._summary and reasoning:
                events += self._reasoning_text(reasoning)
        text = delta.get("content")
        if isinstance(text, str) and text:
            events += self._text(text, output_logprobs(logprobs))
        for call in delta.get("tool_calls") or ():
            events += self._call(call)
        return events

    def passthrough(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """An upstream event of an item Tollway does not model, renumbered into this stream (SPEC §7.6)."""
        kind, upstream_index = event["type"], event["output_index"]
        if kind == "response.output_item.added":
            events = self._close_reasoning()
            item = self._foreign[upstream_index] = copy.deepcopy(event["item"])
            self._items.append(item)
        elif upstream_index in self._foreign:
            events = []
            item = self._foreign[upstream_index]
        else:
            return []
        index = next(i for i, open_item in enumerate(self._items) if open_item is item)
        if kind == "response.output_item.done" and isinstance(event.get("item"), dict):
            item.clear()
            item.update(copy.deepcopy(event["item"]))
            self._done.add(id(item))
        delta = event.get("delta")
        if isinstance(delta, str):
            self.delivered_bytes += len(delta.encode())
        fields = {k: v for k, v in event.items() if k not in ("type", "sequence_number", "output_index")}
        events.append(self._event(kind, output_index=index, **fields))
        return events

    def _reasoning_text(self, text: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        item = self._reasoning
        if item is None:
            item = self._reasoning = reasoning_item(_item_id("rs"), "")
            item["summary"] = []
            self._items.append(item)
            index = len(self._items) - 1
            events.append(self._event("response.output_item.added", output_index=index, item=copy.deepcopy(item)))
            part = {"type": "summary_text", "text": ""}
            item["summary"].append(part)
            events.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    item_id=item["id"],
                    output_index=index,
                    summary_index=0,
                    part=dict(part),
                )
            )
        item["summary"][0]["text"] += text
        events.append(
            self._event(
                "response.reasoning_summary_text.delta",
                item_id=item["id"],
                output_index=self._items.index(item),
                summary_index=0,
                delta=text,
            )
        )
        return events

    def _close_reasoning(self) -> list[dict[str, Any]]:
        """Close the open reasoning item: OpenAI ends a reasoning item before the next item starts."""
        item, self._reasoning = self._reasoning, None
        if item is None:
            return []
        index = self._items.index(item)
        part = item["summary"][0]
        self._done.add(id(item))
        where = {"item_id": item["id"], "output_index": index, "summary_index": 0}
        return [
            self._event("response.reasoning_summary_text.done", **where, text=part["text"]),
            self._event("response.reasoning_summary_part.done", **where, part=dict(part)),
            self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item)),
        ]

    def _text(self, text: str, logprobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        message = self._message
        if message is None:
            events += self._close_reasoning()
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
        message["content"][0]["logprobs"] += logprobs
        self.delivered_bytes += len(text.encode())
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=message["id"],
                output_index=self._items.index(message),
                content_index=0,
                delta=text,
                logprobs=logprobs,
            )
        )
        return events

    def _call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        key = call.get("index", 0)
        function = call.get("function") or {}
        item = self._calls.get(key)
        if item is None:
            events += self._close_reasoning()
            name = function.get("name") or ""
            call_id = call.get("id") or _item_id("call")
            item = function_call_item(_item_id("fc"), call_id, name, "", "in_progress", call.get("extra_content"))
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
        events += self._close_reasoning()
        for index, item in enumerate(self._items):
            if id(item) in self._done or item.get("type") not in ("message", "function_call"):
                continue  # closed already, or passed through (its own done event came from upstream)
            if item["type"] == "message":
                part = item["content"][0]
                events.append(
                    self._event(
                        "response.output_text.done",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        text=part["text"],
                        logprobs=part["logprobs"],
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

    def finish(self, finish_reason: str | None, usage: Usage, cost_nanos: int | None = None) -> list[dict[str, Any]]:
        """Close every item, then the terminal ``response.completed`` or ``response.incomplete``, whose usage
        carries ``cost`` (SPEC §19) when given."""
        status, incomplete = status_of(finish_reason)
        events = self._close_items("completed" if status == "completed" else "incomplete")
        usage_body = usage_json(usage)
        self.response.update(
            status=status,
            incomplete_details=incomplete,
            usage=usage_body if cost_nanos is None else with_cost(usage_body, cost_nanos),
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
    if item.get("type") not in ("message", "function_call"):
        return copy.deepcopy(item)
    copied = dict(item)
    if "content" in copied:
        copied["content"] = [dict(part) for part in copied["content"]]
    return copied
