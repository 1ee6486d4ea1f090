"""The ``system`` and ``messages`` of an Anthropic Messages body (SPEC §19) as canonical chat messages. Pure.

``system`` becomes system messages (one per text block, adapters join them with a blank line); a user turn becomes
its ``tool_result`` blocks as tool messages, then a user message of its text and image blocks (images as
``image_url`` parts); an assistant turn becomes one assistant message (text joined, ``tool_use`` as ``tool_calls``
with the input re-serialised) whose ``thinking`` and ``redacted_thinking`` blocks are kept beside the messages, by
message index, for the anthropic adapter only. ``cache_control`` and ``citations`` are accepted and not forwarded;
``is_error`` of a tool result is accepted and dropped. Errors name the Anthropic JSON path.
"""

from __future__ import annotations

import re
from typing import Any, Final, NoReturn, cast

import orjson

from tollway.domain.chat_messages import check_fields
from tollway.errors import InvalidRequest

MAX_TURNS: Final = 10_000
_CANONICAL_PATH: Final = re.compile(r"messages\[(\d+)\](?:\.content\[(\d+)\])?(.*)", re.DOTALL)

_TURN_FIELDS: Final = frozenset({"role", "content"})
_TEXT_FIELDS: Final = frozenset({"type", "text", "cache_control", "citations"})
_IMAGE_FIELDS: Final = frozenset({"type", "source", "cache_control"})
_TOOL_RESULT_FIELDS: Final = frozenset({"type", "tool_use_id", "content", "is_error", "cache_control"})
_TOOL_USE_FIELDS: Final = frozenset({"type", "id", "name", "input", "cache_control"})
_THINKING_FIELDS: Final = frozenset({"type", "thinking", "signature"})
_REDACTED_FIELDS: Final = frozenset({"type", "data"})
_BASE64_SOURCE_FIELDS: Final = frozenset({"type", "media_type", "data"})
_URL_SOURCE_FIELDS: Final = frozenset({"type", "url"})
_MEDIA_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


class Conversation:
    """The canonical messages being built, with what the prompt bound and the anthropic adapter need."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.thinking: dict[int, tuple[dict[str, Any], ...]] = {}
        self.images: list[int] = []
        self.call_ids: set[str] = set()
        # Per canonical message: the Anthropic path it came from, and the content index of each of its parts (user
        # messages with parts), so that an error found after translation can name the Anthropic path.
        self.origins: list[tuple[str, tuple[int, ...]]] = []

    def add(self, message: dict[str, Any], origin: str, parts: tuple[int, ...] = ()) -> None:
        self.messages.append(message)
        self.origins.append((origin, parts))

    def anthropic_path(self, path: str) -> str:
        """The Anthropic path of a canonical one (``messages[3].content[1].image_url.url`` ->
        ``messages[2].content[0].source``); a path of no canonical message is returned as it is."""
        match = _CANONICAL_PATH.fullmatch(path)
        if match is None or int(match.group(1)) >= len(self.origins):
            return path
        origin, parts = self.origins[int(match.group(1))]
        part, rest = match.group(2), match.group(3)
        if part is not None and int(part) < len(parts):
            rest = rest.replace(".image_url.url", ".source").replace(".image_url", ".source")
            return f"{origin}.content[{parts[int(part)]}]{rest}"
        return origin + (f".content[{part}]" if part is not None else "") + rest


def conversation(system: object, turns: object) -> Conversation:
    """Validate and translate ``system`` and ``messages``; raise ``InvalidRequest`` at the first fault."""
    built = Conversation()
    _system(system, built)
    _turns(turns, built)
    return built


def missing_or_wrong(value: object, path: str, expected: str) -> NoReturn:
    if value is None:
        raise InvalidRequest(f"{path} is required.", path)
    raise InvalidRequest(f"{path} must be {expected}.", path)


def _system(value: object, built: Conversation) -> None:
    if value is None or value == "":
        return
    if type(value) is str:
        built.add({"role": "system", "content": value}, "system")
        return
    if type(value) is not list:
        raise InvalidRequest("system must be a string or an array of text blocks.", "system")
    for index, block in enumerate(value):  # one system message per block: adapters join them with a blank line
        text = _text_block(block, f"system[{index}]", "system")["text"]
        if text:
            built.add({"role": "system", "content": text}, f"system[{index}]")


def _turns(turns: object, built: Conversation) -> None:
    if turns is None:
        raise InvalidRequest("messages is required.", "messages")
    if type(turns) is not list or not 1 <= len(turns) <= MAX_TURNS:
        raise InvalidRequest(f"messages must be an array of 1 to {MAX_TURNS:,} messages.", "messages")
    for index, turn in enumerate(turns):
        path = f"messages[{index}]"
        if type(turn) is not dict:
            raise InvalidRequest(f"{path} must be an object with role and content.", path)
        check_fields(turn, _TURN_FIELDS, path, "a message")
        role = turn.get("role")
        content = turn.get("content")
        if role == "user":
            _user_turn(content, path, built)
        elif role == "assistant":
            _assistant_turn(content, path, built)
        else:
            missing_or_wrong(role, f"{path}.role", "user or assistant")


def _blocks(content: object, path: str) -> list[Any]:
    if type(content) is not list or not content:
        missing_or_wrong(content, f"{path}.content", "a string or a non-empty array of content blocks")
    return content


def _kind(block: object, path: str, allowed: tuple[str, ...]) -> str:
    if type(block) is not dict:
        raise InvalidRequest(f"{path} must be a content block object with a type.", path)
    kind = block.get("type")
    if type(kind) is not str or kind not in allowed:
        what = "is required" if kind is None else "must be one of"
        raise InvalidRequest(f"{path}.type {what} {', '.join(allowed)} here.", f"{path}.type")
    return kind


def _user_turn(content: object, path: str, built: Conversation) -> None:
    if type(content) is str:
        built.add({"role": "user", "content": content}, path)
        return
    parts: list[dict[str, Any]] = []
    positions: list[int] = []
    has_image = False
    for index, block in enumerate(_blocks(content, path)):
        block_path = f"{path}.content[{index}]"
        kind = _kind(block, block_path, ("text", "image", "tool_result"))
        if kind == "tool_result":
            built.add(_tool_result(block, block_path, built.call_ids), block_path)
            continue
        if kind == "text":
            parts.append(_text_block(block, block_path, "a user message"))
        else:
            parts.append(_image_block(block, block_path))
            has_image = True
        positions.append(index)
    if parts:
        if has_image:
            built.images.append(len(built.messages))
        built.add({"role": "user", "content": parts}, path, tuple(positions))


def _assistant_turn(content: object, path: str, built: Conversation) -> None:
    if type(content) is str:
        built.add({"role": "assistant", "content": content}, path)
        return
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content, path)):
        block_path = f"{path}.content[{index}]"
        kind = _kind(block, block_path, ("text", "tool_use", "thinking", "redacted_thinking"))
        if kind == "text":
            texts.append(_text_block(block, block_path, "an assistant message")["text"])
        elif kind == "tool_use":
            calls.append(_tool_use(block, block_path, built.call_ids))
        elif kind == "thinking":
            check_fields(block, _THINKING_FIELDS, block_path, "a thinking block")
            _string(block, "thinking", block_path)
            _string(block, "signature", block_path)
            thinking.append({"type": "thinking", "thinking": block["thinking"], "signature": block["signature"]})
        else:
            check_fields(block, _REDACTED_FIELDS, block_path, "a redacted_thinking block")
            _string(block, "data", block_path)
            thinking.append({"type": "redacted_thinking", "data": block["data"]})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        built.thinking[len(built.messages)] = tuple(thinking)
    built.add(message, path)


def _string(block: dict[str, Any], key: str, path: str) -> str:
    value = block.get(key)
    if type(value) is not str:
        missing_or_wrong(value, f"{path}.{key}", "a string")
    return value


def _text_block(block: object, path: str, what: str) -> dict[str, Any]:
    if type(block) is not dict or block.get("type") != "text":
        _kind(block, path, ("text",))
    text_block = cast("dict[str, Any]", block)
    check_fields(text_block, _TEXT_FIELDS, path, f"a text block of {what}")
    return {"type": "text", "text": _string(text_block, "text", path)}


def _image_block(block: dict[str, Any], path: str) -> dict[str, Any]:
    check_fields(block, _IMAGE_FIELDS, path, "an image block")
    source = block.get("source")
    source_path = f"{path}.source"
    if type(source) is not dict:
        missing_or_wrong(source, source_path, "an object with type base64 or url")
    kind = source.get("type")
    if kind == "base64":
        check_fields(source, _BASE64_SOURCE_FIELDS, source_path, "a base64 image source")
        media_type = source.get("media_type")
        if type(media_type) is not str or media_type not in _MEDIA_TYPES:
            allowed = ", ".join(sorted(_MEDIA_TYPES))
            raise InvalidRequest(f"{source_path}.media_type must be one of {allowed}.", f"{source_path}.media_type")
        data = _string(source, "data", source_path)
        if not data:
            raise InvalidRequest(f"{source_path}.data must not be empty.", f"{source_path}.data")
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        check_fields(source, _URL_SOURCE_FIELDS, source_path, "a url image source")
        url = _string(source, "url", source_path)
        if not (len(url) > 8 and url[:8].lower() == "https://"):
            raise InvalidRequest(f"{source_path}.url must be an https URL.", f"{source_path}.url")
    else:
        missing_or_wrong(kind, f"{source_path}.type", "base64 or url")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: dict[str, Any], path: str, call_ids: set[str]) -> dict[str, Any]:
    check_fields(block, _TOOL_RESULT_FIELDS, path, "a tool_result block")
    call_id = _string(block, "tool_use_id", path)
    if call_id not in call_ids:
        raise InvalidRequest(
            f"{path}.tool_use_id {call_id[:64]!r} does not match the id of a tool_use block in an earlier assistant "
            "message.",
            f"{path}.tool_use_id",
        )
    if block.get("is_error") is not None and type(block["is_error"]) is not bool:
        raise InvalidRequest(f"{path}.is_error must be a boolean.", f"{path}.is_error")
    content = block.get("content")
    if content is None or type(content) is str:
        text = content or ""
    elif type(content) is list:
        text = "".join(
            _text_block(part, f"{path}.content[{index}]", "a tool_result")["text"] for index, part in enumerate(content)
        )
    else:
        raise InvalidRequest(f"{path}.content must be a string or an array of text blocks.", f"{path}.content")
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _tool_use(block: dict[str, Any], path: str, call_ids: set[str]) -> dict[str, Any]:
    check_fields(block, _TOOL_USE_FIELDS, path, "a tool_use block")
    call_id = _string(block, "id", path)
    if not call_id or call_id in call_ids:
        problem = "must not be empty" if not call_id else "is already used by another tool_use block"
        raise InvalidRequest(f"{path}.id {problem}; tool_use ids must be unique in the conversation.", f"{path}.id")
    call_ids.add(call_id)
    name = _string(block, "name", path)
    if not name:
        raise InvalidRequest(f"{path}.name must not be empty.", f"{path}.name")
    arguments = block.get("input")
    if type(arguments) is not dict:
        missing_or_wrong(arguments, f"{path}.input", "an object")
    try:
        serialised = orjson.dumps(arguments).decode()
    except orjson.JSONEncodeError as exc:  # an integer beyond 64 bits
        raise InvalidRequest(f"{path}.input holds a number too large to forward.", f"{path}.input") from exc
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": serialised}}
