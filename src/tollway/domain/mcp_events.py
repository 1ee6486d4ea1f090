"""The event stream of a Responses tool loop (SPEC §16.3): the ``response.*`` events of every model turn in one
sequence, with the turns' calls to MCP tools shown as ``mcp_call`` items (``response.mcp_call_arguments.delta``/
``done`` while the model writes them, ``response.mcp_call.in_progress`` and ``completed``/``failed`` around the
call) or ``mcp_approval_request`` items, and each server's listing as an ``mcp_list_tools`` item
(``response.mcp_list_tools.in_progress`` then ``completed``/``failed``); every item inside its
``response.output_item.added`` … ``done``. Pure; no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tollway.domain.mcp_items import approval_request_item, mcp_call_item
from tollway.domain.mcp_tools import Offered
from tollway.domain.pricing import Usage
from tollway.domain.responses_output import ResponseEventStream, _copy, usage_json
from tollway.domain.usage import with_cost

MCP_TYPES = ("mcp_call", "mcp_approval_request", "mcp_list_tools")


class AgentEventStream(ResponseEventStream):
    def __init__(self, response: dict[str, Any], summary: bool = False) -> None:
        super().__init__(response, summary)
        self.offered: Mapping[str, Offered] = {}  # the MCP tools of the current turn, by function name
        self._turn_start = 0  # index in the output of the current turn's first item

    # -- a model turn ---------------------------------------------------------------------------------------------

    def start_turn(self, offered: Mapping[str, Offered]) -> None:
        self.offered = offered
        self._turn_start = len(self._items)
        self._message, self._reasoning, self._calls, self._foreign = None, None, {}, {}

    def _call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        key = call.get("index", 0)
        function = call.get("function") or {}
        if key not in self._calls:
            target = self.offered.get(function.get("name") or "")
            if target is None:
                return super()._call(call)
            events = self._close_reasoning()
            label, name = target.server.server_label, target.tool["name"]
            maker = approval_request_item if target.needs_approval else mcp_call_item
            item = maker(label, name, "")
            self._calls[key] = item
            self._items.append(item)
            self.delivered_bytes += len((function.get("name") or "").encode())
            events.append(self._event("response.output_item.added", output_index=len(self._items) - 1, item=dict(item)))
        else:
            events = []
            item = self._calls[key]
            if item["type"] == "function_call":
                return super()._call(call)
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            item["arguments"] += fragment
            self.delivered_bytes += len(fragment.encode())
            if item["type"] == "mcp_call":
                index = self._items.index(item)
                events.append(
                    self._event("response.mcp_call_arguments.delta", item_id=item["id"], output_index=index,
                                delta=fragment)
                )  # fmt: skip
        return events

    def end_turn(self, finish_status: str) -> list[dict[str, Any]]:
        """Close the turn's message and function_call items and its approval requests; its ``mcp_call`` items
        stay open (their arguments done) until the loop has run them."""
        events = self._close_reasoning()
        for index in range(self._turn_start, len(self._items)):
            item = self._items[index]
            if id(item) in self._done:
                continue
            kind = item.get("type")
            if kind == "mcp_call":
                item["arguments"] = item["arguments"] or "{}"
                events.append(
                    self._event("response.mcp_call_arguments.done", item_id=item["id"], output_index=index,
                                arguments=item["arguments"])
                )  # fmt: skip
                continue
            if kind == "mcp_approval_request":
                item["arguments"] = item["arguments"] or "{}"
                self._done.add(id(item))
                events.append(self._event("response.output_item.done", output_index=index, item=dict(item)))
                continue
            if kind not in ("message", "function_call"):
                continue
            events += self._close_one(index, item, finish_status)
        return events

    def _close_one(self, index: int, item: dict[str, Any], status: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if item["type"] == "message":
            part = item["content"][0]
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events.append(
                self._event("response.output_text.done", **where, text=part["text"], logprobs=part["logprobs"])
            )
            events.append(self._event("response.content_part.done", **where, part=dict(part)))
            item["status"] = status
        else:
            events.append(
                self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                            name=item["name"], arguments=item["arguments"])
            )  # fmt: skip
            item["status"] = "completed"
        self._done.add(id(item))
        events.append(self._event("response.output_item.done", output_index=index, item=_copy(item)))
        return events

    def turn_items(self) -> list[dict[str, Any]]:
        """The current turn's items (live: the loop updates its ``mcp_call`` items in place)."""
        return self._items[self._turn_start :]

    # -- items the gateway adds ----------------------------------------------------------------------------------

    def add(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        """An item the loop made itself (a listing, an approved call): ``response.output_item.added``."""
        self._items.append(item)
        return [self._event("response.output_item.added", output_index=len(self._items) - 1, item=copy.deepcopy(item))]

    def progress(self, item: dict[str, Any], event: str) -> list[dict[str, Any]]:
        """``response.mcp_list_tools.in_progress`` or ``response.mcp_call.in_progress``."""
        return [self._event(event, item_id=item["id"], output_index=self._index(item))]

    def close(self, item: dict[str, Any], event: str) -> list[dict[str, Any]]:
        """The item's ``completed``/``failed`` event, then ``response.output_item.done``."""
        index = self._index(item)
        self._done.add(id(item))
        return [
            self._event(event, item_id=item["id"], output_index=index),
            self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item)),
        ]

    def drop_open_calls(self) -> list[dict[str, Any]]:
        """Close every ``mcp_call`` left open (not run: the loop ended first) as it is."""
        events: list[dict[str, Any]] = []
        for index, item in enumerate(self._items):
            if item.get("type") == "mcp_call" and id(item) not in self._done:
                self._done.add(id(item))
                events.append(self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item)))
        return events

    def _index(self, item: dict[str, Any]) -> int:
        return next(i for i, open_item in enumerate(self._items) if open_item is item)

    @property
    def items(self) -> list[dict[str, Any]]:
        """The output items themselves (live)."""
        return self._items

    @property
    def output(self) -> list[dict[str, Any]]:
        return [_copy(item) if item.get("type") not in MCP_TYPES else copy.deepcopy(item) for item in self._items]

    def complete(
        self, status: str, incomplete: dict[str, str] | None, usage: Usage, cost_nanos: int | None
    ) -> list[dict[str, Any]]:
        """The terminal ``response.completed`` or ``response.incomplete`` of the whole loop."""
        events = self.drop_open_calls()
        body = usage_json(usage)
        self.response.update(
            status=status,
            incomplete_details=incomplete,
            usage=body if cost_nanos is None else with_cost(body, cost_nanos),
            output=self.output,
        )
        events.append(self._event(f"response.{status}", response=self.response))
        return events

    def failed(self, code: str, message: str, usage: Usage, cost_nanos: int | None) -> list[dict[str, Any]]:
        events = self.drop_open_calls()
        body = usage_json(usage)
        self.response.update(usage=body if cost_nanos is None else with_cost(body, cost_nanos))
        return events + self.fail(code, message)
