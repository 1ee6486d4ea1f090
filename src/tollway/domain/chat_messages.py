"""Validation of the ``messages`` of a chat completion request (SPEC §7.2): roles, per-role content and parts,
names, and the tool-call conversation (call ids unique; a tool message answers a call of an earlier assistant
message). Messages are checked in place, never copied: they are forwarded to upstreams mostly verbatim.

Optional fields given as ``null`` count as absent, as in OpenAI's API. Errors name the JSON path of the cause.
"""

from __future__ import annotations

import re
from typing import Any, Final, NoReturn

from tollway.errors import InvalidRequest

MAX_MESSAGES: Final = 10_000
MAX_NAME_CHARS: Final = 64

_SYSTEM_FIELDS: Final = frozenset({"role", "content", "name"})
_USER_FIELDS: Final = _SYSTEM_FIELDS
# `refusal` and `audio` belong to OpenAI's assistant message param: clients echo earlier replies back.
_ASSISTANT_FIELDS: Final = frozenset({"role", "content", "name", "tool_calls", "refusal", "audio"})
_TOOL_FIELDS: Final = frozenset({"role", "content", "name", "tool_call_id"})
# ``extra_content`` is provider state a tool call must carry back (Gemini's thought signature, as Google's own
# OpenAI-compatible API spells it: ``{"google": {"thought_signature": ...}}``); only the gemini adapter reads it.
_TOOL_CALL_FIELDS: Final = frozenset({"id", "type", "function", "extra_content"})
_TOOL_CALL_FUNCTION_FIELDS: Final = frozenset({"name", "arguments"})
_AUDIO_REFERENCE_FIELDS: Final = frozenset({"id"})

_TEXT_PART_FIELDS: Final = frozenset({"type", "text"})
_REFUSAL_PART_FIELDS: Final = frozenset({"type", "refusal"})
_IMAGE_PART_FIELDS: Final = frozenset({"type", "image_url"})
_IMAGE_URL_FIELDS: Final = frozenset({"url", "detail"})
_AUDIO_PART_FIELDS: Final = frozenset({"type", "input_audio"})
_INPUT_AUDIO_FIELDS: Final = frozenset({"data", "format"})
_FILE_PART_FIELDS: Final = frozenset({"type", "file"})
_FILE_FIELDS: Final = frozenset({"file_data", "file_id", "filename"})

_ROLES: Final = ("system", "developer", "user", "assistant", "tool")
_IMAGE_DETAILS: Final = frozenset({"auto", "low", "high"})
_AUDIO_FORMATS: Final = frozenset({"wav", "mp3"})
_DATA_IMAGE_URL: Final = re.compile(r"data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)


def validate_messages(messages: object) -> tuple[int, ...]:
    """Check ``messages`` (SPEC §7.2); return the indexes of the messages that have ``image_url`` parts."""
    if messages is None:
        raise InvalidRequest("messages is required.", "messages")
    if type(messages) is not list or not 1 <= len(messages) <= MAX_MESSAGES:
        raise InvalidRequest(f"messages must be an array of 1 to {MAX_MESSAGES:,} messages.", "messages")
    call_ids: set[str] = set()
    image_messages: list[int] = []
    for index, message in enumerate(messages):
        if type(message) is not dict:
            raise InvalidRequest(f"messages[{index}] must be an object with a role.", f"messages[{index}]")
        role = message.get("role")
        if role == "user":
            if _user_message(message, index):
                image_messages.append(index)
        elif role == "assistant":
            _assistant_message(message, index, call_ids)
        elif role == "tool":
            _tool_message(message, index, call_ids)
        elif role == "system" or role == "developer":
            check_fields(message, _SYSTEM_FIELDS, f"messages[{index}]", f"a {role} message")
            _check_name(message, index)
            _text_content(message.get("content"), index, role)
        elif role is None:
            raise InvalidRequest(f"messages[{index}].role is required.", f"messages[{index}].role")
        else:
            roles = ", ".join(_ROLES)
            raise InvalidRequest(f"messages[{index}].role must be one of {roles}.", f"messages[{index}].role")
    return tuple(image_messages)


def check_fields(obj: dict[str, Any], allowed: frozenset[str], path: str, what: str) -> None:
    """Reject any key of ``obj`` not in ``allowed`` (SPEC §1.2: unknown fields are errors at their path)."""
    if not allowed.issuperset(obj):
        _reject_unknown(obj, allowed, path, what)


def _reject_unknown(obj: dict[str, Any], allowed: frozenset[str], path: str, what: str) -> NoReturn:
    for key in obj:
        if key not in allowed:
            shown = key if len(key) <= 64 else key[:64] + "..."
            location = f"{path}.{shown}" if path else shown
            accepted = f"; accepted fields are {', '.join(sorted(allowed))}" if len(allowed) <= 8 else ""
            raise InvalidRequest(f"Unknown field {shown!r} in {what}{accepted}.", location)
    raise AssertionError("no unknown field")  # pragma: no cover - callers check issuperset first


def _check_name(message: dict[str, Any], index: int) -> None:
    name = message.get("name")
    if name is not None and (type(name) is not str or len(name) > MAX_NAME_CHARS):
        raise InvalidRequest(
            f"messages[{index}].name must be a string of at most {MAX_NAME_CHARS} characters.",
            f"messages[{index}].name",
        )


def _missing_or_wrong(value: object, path: str, expected: str) -> NoReturn:
    if value is None:
        raise InvalidRequest(f"{path} is required.", path)
    raise InvalidRequest(f"{path} must be {expected}.", path)


def _text_content(content: object, index: int, role: str) -> None:
    """``system``, ``developer`` and ``tool`` content: a string or a non-empty array of text parts."""
    if type(content) is str:
        return
    path = f"messages[{index}].content"
    if type(content) is not list or not content:
        _missing_or_wrong(content, path, "a string or a non-empty array of text parts")
    for part_index, part in enumerate(content):
        if type(part) is dict and part.get("type") == "text":
            _text_part(part, f"{path}[{part_index}]")
        else:
            _bad_part(part, f"{path}[{part_index}]", f"a {role} message", ("text",))


def _user_message(message: dict[str, Any], index: int) -> bool:
    """Check a user message; return whether it has ``image_url`` parts."""
    check_fields(message, _USER_FIELDS, f"messages[{index}]", "a user message")
    _check_name(message, index)
    content = message.get("content")
    if type(content) is str:
        return False
    path = f"messages[{index}].content"
    if type(content) is not list or not content:
        _missing_or_wrong(content, path, "a string or a non-empty array of content parts")
    has_image = False
    for part_index, part in enumerate(content):
        kind = part.get("type") if type(part) is dict else None
        if kind == "text":
            _text_part(part, f"{path}[{part_index}]")
        elif kind == "image_url":
            _image_part(part, f"{path}[{part_index}]")
            has_image = True
        elif kind == "input_audio":
            _audio_part(part, f"{path}[{part_index}]")
        elif kind == "file":
            _file_part(part, f"{path}[{part_index}]")
        else:
            _bad_part(part, f"{path}[{part_index}]", "a user message", ("text", "image_url", "input_audio", "file"))
    return has_image


def _assistant_message(message: dict[str, Any], index: int, call_ids: set[str]) -> None:
    check_fields(message, _ASSISTANT_FIELDS, f"messages[{index}]", "an assistant message")
    _check_name(message, index)
    tool_calls = message.get("tool_calls")
    has_calls = tool_calls is not None and _tool_calls(tool_calls, index, call_ids)
    content = message.get("content")
    if content is None:
        if not has_calls:
            path = f"messages[{index}].content"
            raise InvalidRequest(f"{path} is required unless the message has tool_calls.", path)
    elif type(content) is not str:
        path = f"messages[{index}].content"
        if type(content) is not list or not content:
            raise InvalidRequest(
                f"{path} must be a string, a non-empty array of text or refusal parts, or null with tool_calls.", path
            )
        for part_index, part in enumerate(content):
            kind = part.get("type") if type(part) is dict else None
            if kind == "text":
                _text_part(part, f"{path}[{part_index}]")
            elif kind == "refusal":
                _string_part(part, f"{path}[{part_index}]", _REFUSAL_PART_FIELDS, "refusal")
            else:
                _bad_part(part, f"{path}[{part_index}]", "an assistant message", ("text", "refusal"))
    refusal = message.get("refusal")
    if refusal is not None and type(refusal) is not str:
        raise InvalidRequest(f"messages[{index}].refusal must be a string.", f"messages[{index}].refusal")
    audio = message.get("audio")
    if audio is not None:
        path = f"messages[{index}].audio"
        if type(audio) is not dict:
            raise InvalidRequest(f"{path} must be an object with the id of an earlier audio response.", path)
        check_fields(audio, _AUDIO_REFERENCE_FIELDS, path, "an assistant audio reference")
        if type(audio.get("id")) is not str:
            _missing_or_wrong(audio.get("id"), f"{path}.id", "a string")


def _tool_calls(tool_calls: object, index: int, call_ids: set[str]) -> bool:
    """Check an assistant message's ``tool_calls``, adding their ids to ``call_ids``; return whether any."""
    path = f"messages[{index}].tool_calls"
    if type(tool_calls) is not list:
        raise InvalidRequest(f"{path} must be an array of tool calls.", path)
    for call_index, call in enumerate(tool_calls):
        call_path = f"{path}[{call_index}]"
        if type(call) is not dict:
            raise InvalidRequest(f"{call_path} must be an object with id, type and function.", call_path)
        check_fields(call, _TOOL_CALL_FIELDS, call_path, "a tool call")
        call_id = call.get("id")
        if type(call_id) is not str or not call_id:
            _missing_or_wrong(call_id, f"{call_path}.id", "a non-empty string")
        if call_id in call_ids:
            raise InvalidRequest(
                f"{call_path}.id {_quote(call_id)} is already used by another tool call; "
                "tool call ids must be unique in the conversation.",
                f"{call_path}.id",
            )
        call_ids.add(call_id)
        if call.get("type") != "function":
            raise InvalidRequest(f'{call_path}.type must be "function".', f"{call_path}.type")
        if call.get("extra_content") is not None and type(call["extra_content"]) is not dict:
            raise InvalidRequest(f"{call_path}.extra_content must be an object.", f"{call_path}.extra_content")
        function = call.get("function")
        if type(function) is not dict:
            _missing_or_wrong(function, f"{call_path}.function", "an object with name and arguments")
        check_fields(function, _TOOL_CALL_FUNCTION_FIELDS, f"{call_path}.function", "a tool call function")
        name = function.get("name")
        if type(name) is not str or not name:
            _missing_or_wrong(name, f"{call_path}.function.name", "a non-empty string")
        if type(function.get("arguments")) is not str:
            _missing_or_wrong(function.get("arguments"), f"{call_path}.function.arguments", "a string of JSON")
    return bool(tool_calls)


def _tool_message(message: dict[str, Any], index: int, call_ids: set[str]) -> None:
    check_fields(message, _TOOL_FIELDS, f"messages[{index}]", "a tool message")
    _check_name(message, index)
    call_id = message.get("tool_call_id")
    path = f"messages[{index}].tool_call_id"
    if type(call_id) is not str:
        _missing_or_wrong(call_id, path, "a string")
    if call_id not in call_ids:
        raise InvalidRequest(
            f"{path} {_quote(call_id)} does not match the id of a tool call in an earlier assistant message.", path
        )
    _text_content(message.get("content"), index, "tool")


def _text_part(part: dict[str, Any], path: str) -> None:
    if len(part) == 2 and type(part.get("text")) is str:  # exactly {type, text}: the common case, checked fast
        return
    _string_part(part, path, _TEXT_PART_FIELDS, "text")


def _string_part(part: dict[str, Any], path: str, fields: frozenset[str], key: str) -> None:
    check_fields(part, fields, path, f"a {key} part")
    if type(part.get(key)) is not str:
        _missing_or_wrong(part.get(key), f"{path}.{key}", "a string")


def _image_part(part: dict[str, Any], path: str) -> None:
    check_fields(part, _IMAGE_PART_FIELDS, path, "an image_url part")
    image = _part_object(part, "image_url", path, "an object with a url")
    check_fields(image, _IMAGE_URL_FIELDS, f"{path}.image_url", "an image_url object")
    url = image.get("url")
    if type(url) is not str:
        _missing_or_wrong(url, f"{path}.image_url.url", "a string")
    is_https = len(url) > 8 and url[:8].lower() == "https://"
    if not is_https and (_DATA_IMAGE_URL.match(url) is None or url.endswith(",")):
        raise InvalidRequest(
            f"{path}.image_url.url must be an https URL or a data:image/...;base64, URL.", f"{path}.image_url.url"
        )
    detail = image.get("detail")
    if detail is not None and (type(detail) is not str or detail not in _IMAGE_DETAILS):
        raise InvalidRequest(f"{path}.image_url.detail must be auto, low or high.", f"{path}.image_url.detail")


def _audio_part(part: dict[str, Any], path: str) -> None:
    check_fields(part, _AUDIO_PART_FIELDS, path, "an input_audio part")
    audio = _part_object(part, "input_audio", path, "an object with data and format")
    check_fields(audio, _INPUT_AUDIO_FIELDS, f"{path}.input_audio", "an input_audio object")
    if type(audio.get("data")) is not str:
        _missing_or_wrong(audio.get("data"), f"{path}.input_audio.data", "a base64 string")
    audio_format = audio.get("format")
    if type(audio_format) is not str or audio_format not in _AUDIO_FORMATS:
        raise InvalidRequest(f"{path}.input_audio.format must be wav or mp3.", f"{path}.input_audio.format")


def _file_part(part: dict[str, Any], path: str) -> None:
    check_fields(part, _FILE_PART_FIELDS, path, "a file part")
    file = _part_object(part, "file", path, "an object with file_data or file_id")
    check_fields(file, _FILE_FIELDS, f"{path}.file", "a file object")
    for key in ("file_data", "file_id", "filename"):
        value = file.get(key)
        if value is not None and type(value) is not str:
            raise InvalidRequest(f"{path}.file.{key} must be a string.", f"{path}.file.{key}")
    if file.get("file_data") is None and file.get("file_id") is None:
        raise InvalidRequest(f"{path}.file must have file_data or file_id.", f"{path}.file")


def _part_object(part: dict[str, Any], key: str, path: str, expected: str) -> dict[str, Any]:
    value = part.get(key)
    if type(value) is not dict:
        _missing_or_wrong(value, f"{path}.{key}", expected)
    return value


def _bad_part(part: object, path: str, what: str, kinds: tuple[str, ...]) -> NoReturn:
    if type(part) is not dict:
        raise InvalidRequest(f"{path} must be a content part object with a type.", path)
    allowed = ", ".join(kinds)
    if part.get("type") is None:
        raise InvalidRequest(f"{path}.type is required; parts of {what} may be {allowed}.", f"{path}.type")
    raise InvalidRequest(f"{path}.type must be one of {allowed} in {what}.", f"{path}.type")


def _quote(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:64] + "...")
