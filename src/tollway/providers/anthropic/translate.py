"""Pure translation between the hub (OpenAI chat) format and Anthropic's Messages API (SPEC §7.4).

Out: ``system``/``developer`` messages joined (blank line between) into ``system``; consecutive same-role turns
merged; assistant ``tool_calls`` as ``tool_use`` blocks; tool messages as ``tool_result`` blocks of a user turn;
tools as ``{name, description, input_schema}``; ``tool_choice`` auto/required/none/named as auto/any/none/tool.
Back: text blocks joined into ``content``, ``tool_use`` as ``tool_calls``, ``thinking`` as ``reasoning_content``;
stop reasons and usage mapped (``prompt_tokens`` counts cache reads and writes, ``cached_tokens`` the reads).
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal, cast

import orjson

from tollway.domain.chat_request import ChatRequest
from tollway.domain.pricing import Usage
from tollway.domain.upstream import ChatResult
from tollway.errors import UpstreamError
from tollway.providers.anthropic import wire
from tollway.providers.base import Fault, InvalidForProvider, mentions_context_length, text
from tollway.providers.content import (
    arguments_object,
    count,
    data_url,
    message_choice,
    system_text,
    text_of,
    usage_of,
)

_EMPTY_SCHEMA: Final[dict[str, Any]] = {"type": "object", "properties": {}}
_TOOL_CHOICES: Final[dict[str, str]] = {"auto": "auto", "required": "any", "none": "none", "function": "tool"}


def build_payload(request: ChatRequest, upstream_model: str, output_limit: int) -> dict[str, Any]:
    """The Messages API body for a validated request (the ✗ cases were refused before, see capabilities)."""
    payload: dict[str, Any] = {"model": upstream_model, "max_tokens": output_limit}
    system = system_text(request.messages)
    if system is not None:
        payload["system"] = system
    payload["messages"] = turns(request.messages, request.thinking_blocks)
    if request.temperature is not None:
        payload["temperature"] = request.temperature
    if request.top_p is not None:
        payload["top_p"] = request.top_p
    if request.stop:
        payload["stop_sequences"] = list(request.stop)
    if request.tools:
        payload["tools"] = [tool(t["function"]) for t in request.tools]
        choice = tool_choice(request)
        if choice is not None:
            payload["tool_choice"] = choice
    if request.user is not None:
        payload["metadata"] = {"user_id": request.user}
    if request.top_k is not None:
        payload["top_k"] = request.top_k
    thinking = thinking_config(request.thinking, output_limit)
    if thinking is not None:
        payload["thinking"] = thinking
    if request.stream:
        payload["stream"] = True
    return payload


def thinking_config(config: dict[str, Any] | None, output_limit: int) -> dict[str, Any] | None:
    """The inbound thinking config (/v1/messages); an enabled budget stays below the effective output limit (a
    clamp of SPEC §9.3 may have lowered it), and thinking is left out when not even the minimum budget fits."""
    if config is None or config.get("type") != "enabled":
        return config
    budget = min(config["budget_tokens"], output_limit - 1)
    if budget < wire.MIN_THINKING_BUDGET:
        return None
    return {**config, "budget_tokens": budget}


def turns(
    messages: list[dict[str, Any]], thinking: dict[int, tuple[dict[str, Any], ...]] | None = None
) -> list[wire.Turn]:
    """User and assistant turns of content blocks; consecutive same-role messages merge into one turn. An assistant
    message opens with the thinking blocks it came with (/v1/messages), signatures intact."""
    out: list[wire.Turn] = []
    for index, message in enumerate(messages):
        role = message["role"]
        if role in ("system", "developer"):
            continue
        if role == "assistant":
            blocks = _assistant_blocks(message, index)
            if thinking and index in thinking:
                blocks = [cast("wire.Block", dict(block)) for block in thinking[index]] + blocks
        elif role == "tool":
            result: wire.ToolResultBlock = {
                "type": "tool_result",
                "tool_use_id": message["tool_call_id"],
                "content": text_of(message["content"]),
            }
            blocks = [result]
        else:
            blocks = _user_blocks(message["content"])
        turn_role: Literal["user", "assistant"] = "assistant" if role == "assistant" else "user"
        if out and out[-1]["role"] == turn_role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": turn_role, "content": blocks})
    return out


def _text(text: str) -> list[wire.Block]:
    # Anthropic rejects empty text blocks; an empty string adds nothing.
    return [{"type": "text", "text": text}] if text else []


def _user_blocks(content: object) -> list[wire.Block]:
    if isinstance(content, str):
        return _text(content)
    blocks: list[wire.Block] = []
    for part in content if isinstance(content, list) else ():
        if part["type"] == "text":
            blocks.extend(_text(part["text"]))
        elif part["type"] == "image_url":
            blocks.append(image_block(part["image_url"]["url"]))
    return blocks


def image_block(url: str) -> wire.ImageBlock:
    inline = data_url(url)
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = inline
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _assistant_blocks(message: dict[str, Any], index: int) -> list[wire.Block]:
    blocks = _text(text_of(message.get("content")))
    for call_index, call in enumerate(message.get("tool_calls") or ()):
        arguments = arguments_object(call["function"]["arguments"])
        if arguments is None:  # refused before the call (capabilities); kept here so translation is total
            path = f"messages[{index}].tool_calls[{call_index}].function.arguments"
            raise InvalidForProvider(f"{path} must be a JSON object for Anthropic.", path)
        blocks.append({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": arguments})
    return blocks


def tool(function: dict[str, Any]) -> wire.Tool:
    out: wire.Tool = {"name": function["name"], "input_schema": function.get("parameters") or _EMPTY_SCHEMA}
    if function.get("description") is not None:
        out["description"] = function["description"]
    return out


def tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    """``tool_choice``, with ``disable_parallel_tool_use`` for ``parallel_tool_calls: false``."""
    mode = request.tool_choice
    if mode is None and request.parallel_tool_calls is not False:
        return None
    choice: dict[str, Any] = {"type": _TOOL_CHOICES[mode or "auto"]}
    if mode == "function":
        choice["name"] = request.tool_choice_name
    if request.parallel_tool_calls is False and mode != "none":
        choice["disable_parallel_tool_use"] = True
    return choice


def finish_reason(stop_reason: object) -> str:
    return wire.FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def parse_usage(raw: object) -> Usage | None:
    """prompt = input + cache reads + cache writes; cached = cache reads; completion = output (SPEC §7.4); the
    cache writes are kept apart too, for the cache-write price (§19)."""
    if not isinstance(raw, dict):
        return None
    cache_read = raw.get("cache_read_input_tokens")
    cache_write = raw.get("cache_creation_input_tokens")
    read = 0 if cache_read is None else count(cache_read)
    write = 0 if cache_write is None else count(cache_write)
    prompt = count(raw.get("input_tokens"))
    if prompt is None or read is None or write is None:
        return None
    return usage_of(prompt + read + write, count(raw.get("output_tokens")), read, None, write)


def tool_call(block: dict[str, Any]) -> dict[str, Any]:
    arguments = orjson.dumps(block.get("input") or {}).decode()
    return {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": arguments}}


def completion_result(raw: dict[str, Any], slug: str) -> ChatResult:
    """A Messages API response as one chat.completion choice and its usage."""
    content = raw.get("content")
    if raw.get("type") != "message" or not isinstance(content, list):
        raise UpstreamError(f"Upstream provider '{slug}' returned a malformed message.")
    texts: list[str] = []
    thoughts: list[str] = []
    thinking: list[dict[str, Any]] = []  # the blocks themselves, signatures intact, for /v1/messages
    calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            raise UpstreamError(f"Upstream provider '{slug}' returned a malformed content block.")
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thoughts.append(block["thinking"])
            signature = block.get("signature")
            thinking.append({"type": "thinking", "thinking": block["thinking"], "signature": text(signature) or ""})
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
            thinking.append({"type": "redacted_thinking", "data": block["data"]})
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise UpstreamError(f"Upstream provider '{slug}' returned a malformed tool_use block.")
            calls.append(tool_call(block))
    message: dict[str, Any] = {"content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    choice = message_choice(0, message, finish_reason(raw.get("stop_reason")))
    stop_sequence = text(raw.get("stop_sequence")) if raw.get("stop_reason") == "stop_sequence" else None
    return ChatResult({"choices": [choice]}, parse_usage(raw.get("usage")), tuple(thinking), stop_sequence)


# Anthropic names the offending field as the message's prefix: "max_tokens: Field required",
# "messages.0.content.0.text: text content blocks must be non-empty".
_FIELD_PREFIX: Final = re.compile(r"([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*): ")


def read_error(body: object) -> Fault:
    """``{"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 208310 tokens >
    200000 maximum"}}``; the parameter is the message's ``field.path: `` prefix when it has one."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return Fault()
    message = text(error.get("message"))
    field = _FIELD_PREFIX.match(message) if message is not None else None
    return Fault(message, field.group(1) if field else None, mentions_context_length(message))
