"""Responses API input items (SPEC §7.6): validation into canonical shapes, the rebuilt context of
``previous_response_id`` (previous input, previous output, new input), the call-id rule, and the prompt bound T_p
of SPEC §9.3 over the rebuilt input, ``instructions`` and ``tools``. Pure; no I/O.

Canonical items, the only shapes stored and sent on:
``{"type": "message", "role", "content": str | [input_text / output_text / input_image parts]}``,
``{"type": "function_call", "call_id", "name", "arguments"}``, ``{"type": "function_call_output", "call_id",
"output"}``.
"""

from __future__ import annotations

import re
from typing import Any, Final

from tollway.domain.chat_messages import check_fields
from tollway.domain.chat_request import _json_size
from tollway.domain.mcp_items import parse_approval_response
from tollway.errors import InvalidRequest

MAX_ITEMS: Final = 10_000
_ROLES: Final = ("user", "system", "developer", "assistant")
# `id` and `status` come with items clients echo back from an earlier response's output; they are dropped.
_MESSAGE_FIELDS: Final = frozenset({"type", "role", "content", "id", "status"})
# ``extra_content``: provider state of the call (Gemini's thought signature), kept and sent back (SPEC §7.6).
_CALL_FIELDS: Final = frozenset({"type", "call_id", "name", "arguments", "id", "status", "extra_content"})
_OUTPUT_FIELDS: Final = frozenset({"type", "call_id", "output", "id", "status"})
_INPUT_TEXT_FIELDS: Final = frozenset({"type", "text"})
_OUTPUT_TEXT_FIELDS: Final = frozenset({"type", "text", "annotations", "logprobs"})
_IMAGE_FIELDS: Final = frozenset({"type", "image_url", "detail", "file_id"})
_IMAGE_DETAILS: Final = frozenset({"auto", "low", "high"})
_TEXT_PARTS: Final = frozenset({"input_text", "output_text"})
_IMAGE_URL: Final = re.compile(r"(https://\S+|data:image/[a-z0-9.+-]+;base64,\S*)", re.IGNORECASE)
_CALL_ID_CHARS: Final = 256

# Output item types of OpenAI's Responses API that Tollway does not model but passes through (SPEC §7.6): a
# response's reasoning and hosted-tool items, which clients echo back as input. Anything else is refused.
PASSTHROUGH_TYPES: Final = frozenset(
    {
        "reasoning", "web_search_call", "file_search_call", "computer_call", "computer_call_output",
        "code_interpreter_call", "image_generation_call", "local_shell_call", "local_shell_call_output",
        "shell_call", "shell_call_output", "apply_patch_call", "apply_patch_call_output", "mcp_list_tools",
        "mcp_approval_request", "mcp_approval_response", "mcp_call", "custom_tool_call", "custom_tool_call_output",
        "compaction",
    }
)  # fmt: skip
MODELLED_TYPES: Final = frozenset({"message", "function_call", "function_call_output"})

# SPEC §9.3 allowances, as for chat messages.
PROMPT_BOUND_BASE: Final = 32
PROMPT_BOUND_PER_ITEM: Final = 16


def parse_input(value: object) -> list[dict[str, Any]]:
    """``input`` as canonical items: a string is one user message; an array is checked item by item."""
    if value is None:
        raise InvalidRequest("input is required.", "input")
    if type(value) is str:
        return [{"type": "message", "role": "user", "content": value}]
    if type(value) is not list or not 1 <= len(value) <= MAX_ITEMS:
        raise InvalidRequest(f"input must be a string or an array of 1 to {MAX_ITEMS:,} items.", "input")
    return [_item(item, f"input[{index}]") for index, item in enumerate(value)]


def _item(item: object, path: str) -> dict[str, Any]:
    if type(item) is not dict:
        raise InvalidRequest(f"{path} must be an object such as a message item.", path)
    kind = item.get("type")
    if kind == "message" or (kind is None and "role" in item):
        return _message(item, path)
    if kind == "function_call":
        check_fields(item, _CALL_FIELDS, path, "a function_call item")
        call = {
            "type": "function_call",
            "call_id": _call_id(item, path),
            "name": _string(item, "name", path),
            "arguments": _string(item, "arguments", path),
        }
        return with_extra_content(call, item, path)
    if kind == "function_call_output":
        check_fields(item, _OUTPUT_FIELDS, path, "a function_call_output item")
        return {"type": "function_call_output", "call_id": _call_id(item, path), "output": _output(item, path)}
    if kind == "mcp_approval_response":
        return parse_approval_response(item, path)
    if kind in PASSTHROUGH_TYPES:
        return item
    raise InvalidRequest(
        f"{path}.type must be message, function_call, function_call_output, or an output item of an earlier "
        "response (such as reasoning).",
        f"{path}.type",
    )


def is_passthrough(item: dict[str, Any]) -> bool:
    """An item Tollway does not model: kept unchanged, forwarded to openai providers, skipped over chat."""
    return item.get("type") not in MODELLED_TYPES


def _message(item: dict[str, Any], path: str) -> dict[str, Any]:
    check_fields(item, _MESSAGE_FIELDS, path, "a message item")
    role = item.get("role")
    if role not in _ROLES:
        what = "is required" if role is None else f"must be one of {', '.join(_ROLES)}"
        raise InvalidRequest(f"{path}.role {what}.", f"{path}.role")
    content = item.get("content")
    if type(content) is str:
        return {"type": "message", "role": role, "content": content}
    if type(content) is not list or not content:
        raise InvalidRequest(
            f"{path}.content must be a string or a non-empty array of content parts.", f"{path}.content"
        )
    parts = [_part(part, f"{path}.content[{i}]", role) for i, part in enumerate(content)]
    return {"type": "message", "role": role, "content": parts}


def _part(part: object, path: str, role: str) -> dict[str, Any]:
    kind = part.get("type") if type(part) is dict else None
    if type(part) is not dict or (kind not in _TEXT_PARTS and kind != "input_image"):
        allowed = "input_text, output_text or input_image" if role == "user" else "input_text or output_text"
        raise InvalidRequest(f"{path} must be a content part of type {allowed}.", f"{path}.type" if kind else path)
    if kind == "input_image":
        if role != "user":
            raise InvalidRequest(f"input_image parts are only allowed in user messages ({role} given).", f"{path}.type")
        check_fields(part, _IMAGE_FIELDS, path, "an input_image part")
        if part.get("file_id") is not None:
            raise InvalidRequest(
                "input_image.file_id is not supported; send the image as image_url.", f"{path}.file_id"
            )
        url = part.get("image_url")
        if type(url) is not str or _IMAGE_URL.fullmatch(url) is None:
            raise InvalidRequest(
                f"{path}.image_url must be an https URL or a data:image/...;base64, URL.", f"{path}.image_url"
            )
        detail = part.get("detail")
        if detail is not None and detail not in _IMAGE_DETAILS:
            raise InvalidRequest(f"{path}.detail must be auto, low or high.", f"{path}.detail")
        image: dict[str, Any] = {"type": "input_image", "image_url": url}
        if detail is not None:
            image["detail"] = detail
        return image
    check_fields(part, _INPUT_TEXT_FIELDS if kind == "input_text" else _OUTPUT_TEXT_FIELDS, path, f"a {kind} part")
    return {"type": kind, "text": _string(part, "text", path)}


def _string(obj: dict[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if type(value) is not str:
        what = "is required" if value is None else "must be a string"
        raise InvalidRequest(f"{path}.{key} {what}.", f"{path}.{key}")
    return value


def _call_id(item: dict[str, Any], path: str) -> str:
    value = _string(item, "call_id", path)
    if not 1 <= len(value) <= _CALL_ID_CHARS:
        raise InvalidRequest(f"{path}.call_id must be 1 to {_CALL_ID_CHARS} characters.", f"{path}.call_id")
    return value


def _output(item: dict[str, Any], path: str) -> str:
    """A function result: a string, or an array of input_text parts (joined)."""
    value = item.get("output")
    if type(value) is str:
        return value
    if type(value) is list and value:
        texts = []
        for index, part in enumerate(value):
            part_path = f"{path}.output[{index}]"
            if type(part) is not dict or part.get("type") != "input_text":
                raise InvalidRequest(f"{part_path} must be an input_text part.", part_path)
            check_fields(part, _INPUT_TEXT_FIELDS, part_path, "an input_text part")
            texts.append(_string(part, "text", part_path))
        return "".join(texts)
    what = "is required" if value is None else "must be a string"
    raise InvalidRequest(f"{path}.output {what}.", f"{path}.output")


# -- the rebuilt context ---------------------------------------------------------------------------------------


def output_as_input(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stored response's output items as canonical input items: assistant messages and function calls, and the
    items Tollway does not model (reasoning, hosted-tool calls) unchanged, so they go back to the provider."""
    items: list[dict[str, Any]] = []
    for item in output:
        if is_passthrough(item):
            items.append(item)
            continue
        if item.get("type") == "message":
            parts = [{"type": "output_text", "text": p["text"]} for p in item.get("content", ()) if "text" in p]
            items.append({"type": "message", "role": "assistant", "content": parts or ""})
        elif item.get("type") == "function_call":
            call = {"type": "function_call", "call_id": item["call_id"], "name": item["name"]}
            items.append(with_extra_content({**call, "arguments": item["arguments"]}, item, "output"))
    return items


def with_extra_content(call: dict[str, Any], source: dict[str, Any], path: str) -> dict[str, Any]:
    """``call`` with the ``extra_content`` of ``source`` (an object of provider state), when it has one."""
    extra = source.get("extra_content")
    if extra is None:
        return call
    if type(extra) is not dict:
        raise InvalidRequest(f"{path}.extra_content must be an object.", f"{path}.extra_content")
    return {**call, "extra_content": extra}


def check_call_ids(previous: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    """Every ``function_call_output`` of the new input answers a ``function_call`` earlier in the rebuilt context
    (the previous context, or an earlier item of this input); else 400 at ``input[i].call_id`` (SPEC §7.6)."""
    known = {item["call_id"] for item in previous if item["type"] == "function_call"}
    for index, item in enumerate(new):
        if item["type"] == "function_call":
            known.add(item["call_id"])
        elif item["type"] == "function_call_output" and item["call_id"] not in known:
            raise InvalidRequest(
                f"input[{index}].call_id {item['call_id'][:64]!r} does not match any earlier function_call.",
                f"input[{index}].call_id",
            )


def prompt_token_bound(
    items: list[dict[str, Any]],
    instructions: str | None,
    tools: list[dict[str, Any]],
    text_format: dict[str, Any] | None,
    image_allowance_tokens: int,
) -> int:
    """SPEC §9.3 for Responses: 32 + Σ over the rebuilt items, and the instructions as one more message, of
    (16 + B(item)) + B(tools) + B(text.format); each ``input_image`` part counts the image allowance instead of
    its bytes. Not capped at the context window: that depends on the row."""
    bound = PROMPT_BOUND_BASE
    for item in items:
        content = item.get("content")
        if type(content) is list and any(type(p) is dict and p.get("type") == "input_image" for p in content):
            kept = [p for p in content if p.get("type") != "input_image"]
            images = len(content) - len(kept)
            removed_separators = (len(content) - 1) - max(len(kept) - 1, 0)
            bound += images * image_allowance_tokens + removed_separators
            item = {**item, "content": kept}
        bound += PROMPT_BOUND_PER_ITEM + _json_size(item)
    if instructions is not None:
        bound += PROMPT_BOUND_PER_ITEM + _json_size({"role": "system", "content": instructions})
    if tools:
        bound += _json_size(tools)
    if text_format is not None:
        bound += _json_size(text_format)
    return bound


def truncated(
    items: list[dict[str, Any]],
    window: int,
    instructions: str | None,
    tools: list[dict[str, Any]],
    text_format: dict[str, Any] | None,
    image_allowance_tokens: int,
) -> list[dict[str, Any]]:
    """``truncation: auto`` (SPEC §7.6): drop the oldest non-system items until the prompt bound fits ``window``.

    The newest item is always kept (if it alone does not fit, the provider decides); dropping a ``function_call``
    drops its outputs too, so the context stays one a chat API accepts."""
    fixed = prompt_token_bound([], instructions, tools, text_format, image_allowance_tokens)
    costs = [prompt_token_bound([item], None, [], None, image_allowance_tokens) - PROMPT_BOUND_BASE for item in items]
    bound = fixed + sum(costs)
    kept = list(zip(items, costs, strict=True))
    while bound > window:
        index = next((i for i, (item, _) in enumerate(kept[:-1]) if not _is_system(item)), None)
        if index is None:
            break
        item, cost = kept.pop(index)
        bound -= cost
        if item["type"] == "function_call":
            orphans = [p for p in kept if p[0]["type"] == "function_call_output" and p[0]["call_id"] == item["call_id"]]
            bound -= sum(cost for _, cost in orphans)
            kept = [p for p in kept if all(p is not orphan for orphan in orphans)]
    return [item for item, _ in kept]


def _is_system(item: dict[str, Any]) -> bool:
    return item["type"] == "message" and item["role"] in ("system", "developer")
