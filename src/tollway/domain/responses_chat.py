"""A Responses request as a chat-completions body (SPEC §7.6), for every provider kind but ``openai``: the hub
format the chat adapters already translate (SPEC §7.4). Pure; no I/O.

``instructions`` become the first system message; message items become messages whose text parts are joined into
string content (user messages with images keep parts); ``function_call`` items become assistant ``tool_calls``
(consecutive calls share one assistant message); ``function_call_output`` items become tool messages;
``max_output_tokens`` is the output limit and ``text.format`` the ``response_format``. Output-text logprobs
(``include`` or ``top_logprobs``) become chat ``logprobs``/``top_logprobs``; the ASI:One extensions of SPEC §7.5 go
on as chat fields (the asi1 adapter forwards them, the others drop them); reasoning and hosted-tool items are
skipped. The parity fields that only tune or annotate (``text.verbosity``, ``prompt_cache_key``,
``safety_identifier``, ``service_tier``, ``max_tool_calls``, ...) are ignored.
"""

from __future__ import annotations

from typing import Any

from tollway.domain.responses_items import is_passthrough
from tollway.domain.responses_params import ASI1_FIELDS
from tollway.domain.responses_request import ResponsesRequest

# Chat-body keys that carry a Responses parameter under another name, for errors raised on the chat form.
CHAT_TO_RESPONSES_PARAMS = {
    "max_completion_tokens": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "reasoning_effort": "reasoning.effort",
    "messages": "input",
    "logprobs": "include",
}


def chat_body(request: ResponsesRequest, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat completion body for the rebuilt context ``items``."""
    body: dict[str, Any] = {"model": request.model, "messages": chat_messages(request.instructions, items)}
    if request.stream:
        body["stream"] = True
    if request.max_output_tokens is not None:
        body["max_completion_tokens"] = request.max_output_tokens
    for key in ("temperature", "top_p", "user", "parallel_tool_calls"):
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    if request.metadata:
        body["metadata"] = request.metadata
    if request.reasoning_effort is not None:
        body["reasoning_effort"] = request.reasoning_effort
    if request.tools:
        body["tools"] = [_chat_tool(tool) for tool in request.tools]
    choice = request.tool_choice
    if choice is not None:
        body["tool_choice"] = (
            choice if isinstance(choice, str) else {"type": "function", "function": {"name": choice["name"]}}
        )
    if request.text_format is not None:
        body["response_format"] = chat_response_format(request.text_format)
    if request.options.logprobs:
        body["logprobs"] = True
        if request.options.top_logprobs is not None:
            body["top_logprobs"] = request.options.top_logprobs
    for key in ASI1_FIELDS:
        if request.body.get(key) is not None:
            body[key] = request.body[key]
    return body


def chat_messages(instructions: str | None, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if instructions is not None:
        messages.append({"role": "system", "content": instructions})
    for item in items:
        kind = item["type"]
        if is_passthrough(item):
            continue  # a reasoning or hosted-tool item of an openai response: nothing a chat API can take
        if kind == "message":
            messages.append({"role": item["role"], "content": _content(item["content"])})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            if "extra_content" in item:  # a Gemini thought signature goes back with its call
                call["extra_content"] = item["extra_content"]
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and _may_take_calls(last):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    return messages


def _may_take_calls(message: dict[str, Any]) -> bool:
    """An assistant message (text or earlier calls) that the next function call joins, as one chat turn."""
    return "tool_calls" in message or isinstance(message["content"], str)


def _content(content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if all(part["type"] != "input_image" for part in content):
        return "".join(part["text"] for part in content)
    parts: list[dict[str, Any]] = []
    for part in content:
        if part["type"] == "input_image":
            image = {"url": part["image_url"]}
            if "detail" in part:
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            parts.append({"type": "text", "text": part["text"]})
    return parts


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {key: tool[key] for key in ("name", "description", "parameters", "strict") if tool.get(key) is not None}
    return {"type": "function", "function": function}


def chat_response_format(text_format: dict[str, Any]) -> dict[str, Any]:
    if text_format["type"] != "json_schema":
        return {"type": text_format["type"]}
    schema = {k: text_format[k] for k in ("name", "description", "schema", "strict") if text_format.get(k) is not None}
    return {"type": "json_schema", "json_schema": schema}
