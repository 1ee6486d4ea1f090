"""The fake upstream's OpenAI Responses API dialect (``POST /v1/responses`` and ``/responses``): response objects,
the named SSE event sequence (response.created ... response.completed / response.incomplete, function-call
argument deltas, the ``error`` event) and error envelopes, shaped as ``openai.types.responses`` defines them.

The behaviour is chosen by the model name exactly as for chat (``echo``, ``usage?in=&out=``, ``tool-call``, errors,
stream cuts); ``input`` and ``instructions`` are read as chat messages for echo and token counting.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from tollway.fake_upstream.responses import (
    Completion,
    Envelope,
    error_fields,
    render_error,
    render_scenario_error,
)
from tollway.fake_upstream.scenarios import message_text

# type=context_length_exceeded: how the Responses API refuses a too-long input (message, param).
CONTEXT: Final = (
    "Your input exceeds the context window of this model. Please adjust your input and try again.",
    "input",
)

TOOL_CALL_ID: Final = "call_fake_1"
ENCRYPTED_REASONING: Final = "gAAAA-fake-encrypted-reasoning"
_INCOMPLETE: Final = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"role": item.get("role"), "content": message_text(item.get("content"))})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "content": message_text(item.get("output"))})
        elif kind == "function_call":
            messages.append({"role": "assistant", "content": ""})
    return messages


def _usage(completion: Completion) -> dict[str, Any] | None:
    usage = completion.usage
    if usage is None:
        return None
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {
            "cached_tokens": usage["prompt_tokens_details"]["cached_tokens"],
            "cache_write_tokens": 0,
        },
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": usage["completion_tokens_details"]["reasoning_tokens"]},
        "total_tokens": usage["total_tokens"],
    }


class ResponsesDialect:
    """OpenAI's Responses API, as the fake speaks it."""

    @staticmethod
    def check(body: Any) -> bytes | None:
        """The 400 body for a request OpenAI would refuse outright, or None."""
        if not isinstance(body, dict):
            return render_error(
                "We could not parse the JSON body of your request.", "invalid_request_error", "invalid_json"
            )
        if not isinstance(body.get("model"), str) or not body["model"]:
            return render_error(
                "Missing required parameter: 'model'.", "invalid_request_error", "missing_required_parameter", "model"
            )
        if not isinstance(body.get("input"), str | list):
            return render_error(
                "Missing required parameter: 'input'.", "invalid_request_error", "missing_required_parameter", "input"
            )
        return None

    def neutral_body(self, body: dict[str, Any]) -> dict[str, Any]:
        include = body.get("include")
        encrypted = isinstance(include, list) and "reasoning.encrypted_content" in include
        return {
            "messages": _messages(body),
            "max_tokens": body.get("max_output_tokens"),
            "encrypted_reasoning": encrypted,
        }

    @staticmethod
    def _ids(envelope: Envelope) -> tuple[str, str, str]:
        serial = f"{envelope.serial:012d}"
        return f"resp_fake{serial}", f"msg_fake{serial}", f"fc_fake{serial}"

    def _response(self, completion: Completion, envelope: Envelope, status: str, output: list[Any]) -> dict[str, Any]:
        response_id = self._ids(envelope)[0]
        reason = _INCOMPLETE.get(completion.finish_reason) if status != "in_progress" else None
        return {
            "id": response_id,
            "object": "response",
            "created_at": envelope.created,
            "status": "incomplete" if reason else status,
            "model": envelope.model,
            "output": output,
            "usage": _usage(completion) if status != "in_progress" else None,
            "incomplete_details": {"reason": reason} if reason else None,
            "error": None,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "store": False,
        }

    def _items(self, completion: Completion, envelope: Envelope, status: str) -> list[dict[str, Any]]:
        _, message_id, call_id = self._ids(envelope)
        items: list[dict[str, Any]] = []
        if completion.reasoning is not None:
            summary = [{"type": "summary_text", "text": completion.reasoning}]
            reasoning: dict[str, Any] = {
                "id": f"rs_fake{envelope.serial:012d}",
                "type": "reasoning",
                "summary": summary,
            }
            if completion.encrypted:
                reasoning["encrypted_content"] = ENCRYPTED_REASONING
            items.append(reasoning)
        if completion.hosted is not None:
            action = {"type": "search", "query": "fake query"}
            items.append(
                {
                    "id": f"ws_fake{envelope.serial:012d}",
                    "type": completion.hosted,
                    "status": "completed",
                    "action": action,
                }
            )
        if completion.tool_name is not None:
            items.append(
                {
                    "id": call_id,
                    "type": "function_call",
                    "status": status,
                    "call_id": TOOL_CALL_ID,
                    "name": completion.tool_name,
                    "arguments": completion.text,
                }
            )
        else:
            part = {"type": "output_text", "text": completion.text, "annotations": [], "logprobs": []}
            items.append(
                {"id": message_id, "type": "message", "status": status, "role": "assistant", "content": [part]}
            )
        return items

    def render_completion(self, completion: Completion, envelope: Envelope) -> bytes:
        status = "incomplete" if completion.finish_reason in _INCOMPLETE else "completed"
        return orjson.dumps(self._response(completion, envelope, status, self._items(completion, envelope, status)))

    def render_stream(
        self, completion: Completion, envelope: Envelope, *, include_usage: bool, cut_after: int | None
    ) -> list[bytes]:
        """The named events; with ``cut_after``, only that many deltas and no terminal event."""
        events: list[bytes] = []

        def emit(kind: str, **fields: Any) -> None:
            payload = {"type": kind, "sequence_number": len(events), **fields}
            events.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n")

        opening = self._response(completion, envelope, "in_progress", [])
        emit("response.created", response=opening)
        emit("response.in_progress", response=opening)
        final_status = "incomplete" if completion.finish_reason in _INCOMPLETE else "completed"
        items = self._items(completion, envelope, final_status)
        pieces = completion.pieces if cut_after is None else completion.pieces[:cut_after]
        for index, item in enumerate(items):
            if item["type"] == "reasoning":
                emit("response.output_item.added", output_index=index, item={**item, "summary": []})
                where = {"item_id": item["id"], "output_index": index, "summary_index": 0}
                part = item["summary"][0]
                emit("response.reasoning_summary_part.added", **where, part={**part, "text": ""})
                emit("response.reasoning_summary_text.delta", **where, delta=part["text"])
                emit("response.reasoning_summary_text.done", **where, text=part["text"])
                emit("response.reasoning_summary_part.done", **where, part=part)
                emit("response.output_item.done", output_index=index, item=item)
            elif item["type"] not in ("function_call", "message"):  # a hosted-tool call
                emit("response.output_item.added", output_index=index, item={**item, "status": "in_progress"})
                for phase in ("in_progress", "searching", "completed"):
                    emit(f"response.{item['type']}.{phase}", item_id=item["id"], output_index=index)
                emit("response.output_item.done", output_index=index, item=item)
            elif item["type"] == "function_call":
                emit(
                    "response.output_item.added",
                    output_index=index,
                    item={**item, "arguments": "", "status": "in_progress"},
                )
                for piece in pieces:
                    emit("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=piece)
                if cut_after is not None:
                    return events
                emit(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                )
                emit("response.output_item.done", output_index=index, item=item)
            else:
                part = item["content"][0]
                added = {**item, "status": "in_progress", "content": []}
                emit("response.output_item.added", output_index=index, item=added)
                where = {"item_id": item["id"], "output_index": index, "content_index": 0}
                emit("response.content_part.added", **where, part={**part, "text": ""})
                for piece in pieces:
                    emit("response.output_text.delta", **where, delta=piece, logprobs=[])
                if cut_after is not None:
                    return events
                emit("response.output_text.done", **where, text=part["text"], logprobs=[])
                emit("response.content_part.done", **where, part=part)
                emit("response.output_item.done", output_index=index, item=item)
        final = self._response(completion, envelope, final_status, items)
        emit(f"response.{final['status']}", response=final)
        return events

    def render_error(self, status: int, message: str, error_type: str | None, param: str | None = None) -> bytes:
        return render_scenario_error(status, message, error_type, param, CONTEXT)

    def render_error_event(self, status: int, message: str, error_type: str | None) -> bytes:
        _, code = error_fields(status, error_type)
        payload = {"type": "error", "code": code, "message": message, "param": None, "sequence_number": 0}
        return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"
