"""The fake upstream's ASI:One dialects (``/asi1/v1/chat/completions`` and ``/asi1-old/v1/chat/completions``).

The new shape is OpenAI's with ASI:One's extensions (``matched_stop``, ``executable_data``, ``intermediate_steps``,
``conversation_id``, ``metadata``, top-level ``usage.reasoning_tokens``). The old shape has every quirk SPEC §7.5
normalises: no ``object`` or ``index``, ``created`` in milliseconds, choice-level ``role``/``stop_reason``,
``message.role: "user"``, ``message.reasoning``, ``init_thought`` and ``thought`` events, and a server-executed
tool record ``{id, tool_name, args, result}`` in ``tool_calls`` with ``finish_reason: "tool_calls"``.
``max_tokens: 0`` means the provider default.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from tollway.fake_upstream.responses import (
    DONE_EVENT,
    TOOL_CALL_ID,
    Completion,
    Envelope,
    OpenAIDialect,
    render_scenario_error,
)

CONVERSATION_ID: Final = "conv_fake"
INIT_THOUGHT: Final = "Analysing the request"
MATCHED_STOP: Final = 151336


# A tool call ASI:One ran itself: no ``function``, never answered by the client.
EXECUTED_RECORD: Final = {"id": "toolcall-fake-1", "tool_name": "web_search", "args": {"query": "fake"}, "result": {}}


def _usage(completion: Completion) -> dict[str, Any] | None:
    usage = completion.usage
    if usage is None:
        return None
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    return {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
        "completion_tokens_details": None,
        "prompt_tokens_details": {"cached_tokens": cached} if cached else None,
        "reasoning_tokens": usage["completion_tokens_details"]["reasoning_tokens"],
    }


def _openai_call(completion: Completion, arguments: str) -> dict[str, Any]:
    assert completion.tool_name is not None
    return {"id": TOOL_CALL_ID, "type": "function", "function": {"name": completion.tool_name, "arguments": arguments}}


class ASI1Dialect(OpenAIDialect):
    """The new shape; ``old=True`` gives the older one."""

    def __init__(self, *, old: bool = False) -> None:
        self.old = old

    def neutral_body(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("max_tokens") == 0:  # ASI:One: 0 is the provider default
            return {k: v for k, v in body.items() if k != "max_tokens"}
        return body

    def _head(self, envelope: Envelope, chunk: bool) -> dict[str, Any]:
        if self.old:
            return {"id": f"id_fake{envelope.serial:012d}", "model": envelope.model, "created": envelope.created * 1000}
        kind = "chat.completion.chunk" if chunk else "chat.completion"
        return {"id": envelope.id, "object": kind, "created": envelope.created, "model": envelope.model}

    def _finish(self, completion: Completion) -> str:
        # The old shape reports its own server-run tool as a tool call.
        return "tool_calls" if self.old and completion.finish_reason == "stop" else completion.finish_reason

    def render_completion(self, completion: Completion, envelope: Envelope) -> bytes:
        message: dict[str, Any] = {"role": "user" if self.old else "assistant", "content": completion.text}
        calls = []
        if completion.tool_name is not None:
            message["content"] = None
            calls.append(_openai_call(completion, completion.text))
        if self.old:
            calls.append(EXECUTED_RECORD)
            if completion.reasoning is not None:
                message["reasoning"] = completion.reasoning
        else:
            message.update(refusal=None, annotations=None, audio=None, function_call=None)
            message["reasoning_content"] = completion.reasoning
        message["tool_calls"] = calls or None
        body = self._head(envelope, chunk=False)
        choice: dict[str, Any] = {"message": message, "finish_reason": self._finish(completion)}
        body["choices"] = [self._choice(choice, i) for i in range(completion.choices)]
        body["usage"] = _usage(completion)
        if self.old:
            body["thought"] = [completion.reasoning or INIT_THOUGHT]
            body["executable_data"] = [{}]
        else:
            body.update(executable_data=[], intermediate_steps=[], conversation_id=CONVERSATION_ID)
            body["metadata"] = {"weight_version": "default"}
        return orjson.dumps(body)

    def _choice(self, choice: dict[str, Any], index: int) -> dict[str, Any]:
        if self.old:
            return {**choice, "stop_reason": "stop", "role": "assistant"}
        return {"index": index, "logprobs": None, **choice, "matched_stop": MATCHED_STOP}

    def render_stream(
        self, completion: Completion, envelope: Envelope, *, include_usage: bool, cut_after: int | None
    ) -> list[bytes]:
        head = self._head(envelope, chunk=True)

        def event(extra: dict[str, Any]) -> bytes:
            return b"data: " + orjson.dumps({**head, **extra}) + b"\n\n"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choices = [self._delta_choice(i, delta, finish) for i in range(completion.choices)]
            return event({"choices": choices})

        events = []
        if self.old:
            events.append(event({"init_thought": INIT_THOUGHT}))
            if completion.reasoning is not None:
                events.append(event({"thought": completion.reasoning}))
        events.append(chunk({"role": "user" if self.old else "assistant", "content": ""}))
        if completion.reasoning is not None and not self.old:
            events.append(chunk({"reasoning_content": completion.reasoning}))
        pieces = completion.pieces if cut_after is None else completion.pieces[:cut_after]
        if completion.tool_name is None:
            events += [chunk({"content": piece}) for piece in pieces]
        else:
            events.append(chunk({"tool_calls": [{"index": 0, **_openai_call(completion, "")}]}))
            events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces]
        if cut_after is not None:
            return events
        if self.old:
            events.append(chunk({"tool_calls": [EXECUTED_RECORD]}))
        events.append(chunk({}, self._finish(completion)))
        usage = _usage(completion)
        if include_usage and usage is not None:
            events.append(event({"choices": [], "usage": usage}))
        events.append(DONE_EVENT)
        return events

    def _delta_choice(self, index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        if self.old:
            choice: dict[str, Any] = {"delta": delta, "finish_reason": finish}
            return {**choice, "stop_reason": "stop"} if finish else choice
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**choice, "matched_stop": MATCHED_STOP} if finish else choice

    def render_error(self, status: int, message: str, error_type: str | None, param: str | None = None) -> bytes:
        return render_scenario_error(status, message, error_type, param)
