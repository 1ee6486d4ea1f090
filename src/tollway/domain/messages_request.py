"""A POST /v1/messages body (Anthropic's Messages API inbound, SPEC §19) validated and translated into the canonical
``ChatRequest`` that every provider kind serves (SPEC §7.4). Pure; no I/O.

``system`` becomes the first system message; user turns become user messages (text and image blocks as parts) with
their ``tool_result`` blocks first, as tool messages; assistant turns become assistant messages (text joined,
``tool_use`` as ``tool_calls`` with the input re-serialised); ``thinking`` and ``redacted_thinking`` blocks are kept
beside the messages (``ChatRequest.thinking_blocks``) for the anthropic adapter only. ``tools`` become function tools,
``tool_choice`` auto/any/tool/none becomes auto/required/function/none (``disable_parallel_tool_use`` as
``parallel_tool_calls: false``), ``stop_sequences`` the ``stop`` list, ``metadata.user_id`` the ``user``.
``cache_control`` and ``citations`` are accepted and not forwarded; errors name the Anthropic JSON path.
"""

from __future__ import annotations

import re
from typing import Any, Final, NoReturn, cast

import orjson

from tollway.domain.chat_messages import check_fields
from tollway.domain.chat_request import MAX_IDENTIFIER_CHARS, MAX_TOOLS, ChatRequest, ToolChoice
from tollway.errors import InvalidRequest

MAX_TURNS: Final = 10_000
MIN_THINKING_BUDGET: Final = 1_024

_FIELDS: Final = frozenset(
    {
        "model", "max_tokens", "system", "messages", "tools", "tool_choice", "stop_sequences", "temperature",
        "top_p", "top_k", "thinking", "metadata", "stream",
    }
)  # fmt: skip
_TURN_FIELDS: Final = frozenset({"role", "content"})
_TEXT_FIELDS: Final = frozenset({"type", "text", "cache_control", "citations"})
_IMAGE_FIELDS: Final = frozenset({"type", "source", "cache_control"})
_TOOL_RESULT_FIELDS: Final = frozenset({"type", "tool_use_id", "content", "is_error", "cache_control"})
_TOOL_USE_FIELDS: Final = frozenset({"type", "id", "name", "input", "cache_control"})
_THINKING_FIELDS: Final = frozenset({"type", "thinking", "signature"})
_REDACTED_FIELDS: Final = frozenset({"type", "data"})
_TOOL_FIELDS: Final = frozenset({"type", "name", "description", "input_schema", "cache_control"})
_TOOL_CHOICE_FIELDS: Final = frozenset({"type", "name", "disable_parallel_tool_use"})
_THINKING_CONFIG_FIELDS: Final = frozenset({"type", "budget_tokens", "display"})
_METADATA_FIELDS: Final = frozenset({"user_id"})
_BASE64_SOURCE_FIELDS: Final = frozenset({"type", "media_type", "data"})
_URL_SOURCE_FIELDS: Final = frozenset({"type", "url"})
_MEDIA_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_CHOICES: Final[dict[str, ToolChoice]] = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}
_THINKING_TYPES: Final = ("enabled", "disabled", "adaptive")
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


class _Conversation:
    """The canonical messages being built, with what the prompt bound and the anthropic adapter need."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.thinking: dict[int, tuple[dict[str, Any], ...]] = {}
        self.images: list[int] = []
        self.call_ids: set[str] = set()


def parse_messages_request(body: dict[str, Any]) -> ChatRequest:
    """Validate an Anthropic Messages body; raise ``InvalidRequest`` naming the JSON path of the first fault."""
    check_fields(body, _FIELDS, "", "the messages request")
    model = body.get("model")
    if type(model) is not str or not model:
        _missing_or_wrong(model, "model", "a non-empty string")
    max_tokens = body.get("max_tokens")
    if type(max_tokens) is not int or max_tokens < 1:
        _missing_or_wrong(max_tokens, "max_tokens", "an integer of at least 1")
    conversation = _Conversation()
    _system(body.get("system"), conversation)
    _turns(body.get("messages"), conversation)
    tools, names = _tools(body.get("tools"))
    choice, choice_name, parallel = _tool_choice(body.get("tool_choice"), names)
    stream = _boolean(body, "stream")
    temperature = _unit_number(body, "temperature")
    top_p = _unit_number(body, "top_p")
    stop = _stop_sequences(body.get("stop_sequences"))
    user = _user(body.get("metadata"))
    chat: dict[str, Any] = {"model": model, "messages": conversation.messages, "max_tokens": max_tokens}
    optional = {
        "stream": stream or None, "temperature": temperature, "top_p": top_p, "stop": list(stop) or None,
        "tools": tools or None, "tool_choice": _chat_tool_choice(choice, choice_name), "parallel_tool_calls": parallel,
        "user": user,
    }  # fmt: skip
    chat.update({key: value for key, value in optional.items() if value is not None})
    return ChatRequest(
        body=chat,
        model=model,
        messages=conversation.messages,
        stream=stream,
        include_usage=False,
        n=1,
        output_limit=max_tokens,
        max_tokens=max_tokens,
        max_completion_tokens=None,
        temperature=temperature,
        top_p=top_p,
        frequency_penalty=None,
        presence_penalty=None,
        stop=stop,
        tools=tools,
        tool_names=names,
        tool_choice=choice,
        tool_choice_name=choice_name,
        parallel_tool_calls=parallel,
        response_format=None,
        seed=None,
        user=user,
        logprobs=False,
        top_logprobs=None,
        logit_bias=None,
        reasoning_effort=None,
        metadata={},
        agent_address=None,
        web_search=None,
        planner_mode=None,
        study_mode=None,
        store=None,
        service_tier=None,
        verbosity=None,
        prompt_cache_key=None,
        safety_identifier=None,
        modalities=None,
        audio=None,
        prediction=None,
        web_search_options=None,
        image_messages=tuple(conversation.images),
        top_k=_top_k(body.get("top_k")),
        thinking=_thinking(body.get("thinking"), max_tokens),
        thinking_blocks=conversation.thinking,
    )


def _missing_or_wrong(value: object, path: str, expected: str) -> NoReturn:
    if value is None:
        raise InvalidRequest(f"{path} is required.", path)
    raise InvalidRequest(f"{path} must be {expected}.", path)


def _system(value: object, conversation: _Conversation) -> None:
    if value is None or value == "":
        return
    if type(value) is str:
        conversation.messages.append({"role": "system", "content": value})
        return
    if type(value) is not list:
        raise InvalidRequest("system must be a string or an array of text blocks.", "system")
    parts = [_text_block(block, f"system[{index}]", "system") for index, block in enumerate(value)]
    if parts:
        conversation.messages.append({"role": "system", "content": parts})


def _turns(turns: object, conversation: _Conversation) -> None:
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
            _user_turn(content, path, conversation)
        elif role == "assistant":
            _assistant_turn(content, path, conversation)
        else:
            _missing_or_wrong(role, f"{path}.role", "user or assistant")


def _blocks(content: object, path: str) -> list[Any]:
    if type(content) is not list or not content:
        _missing_or_wrong(content, f"{path}.content", "a string or a non-empty array of content blocks")
    return content


def _kind(block: object, path: str, allowed: tuple[str, ...]) -> str:
    if type(block) is not dict:
        raise InvalidRequest(f"{path} must be a content block object with a type.", path)
    kind = block.get("type")
    if type(kind) is not str or kind not in allowed:
        what = "is required" if kind is None else "must be one of"
        raise InvalidRequest(f"{path}.type {what} {', '.join(allowed)} here.", f"{path}.type")
    return kind


def _user_turn(content: object, path: str, conversation: _Conversation) -> None:
    if type(content) is str:
        conversation.messages.append({"role": "user", "content": content})
        return
    parts: list[dict[str, Any]] = []
    has_image = False
    for index, block in enumerate(_blocks(content, path)):
        block_path = f"{path}.content[{index}]"
        kind = _kind(block, block_path, ("text", "image", "tool_result"))
        if kind == "text":
            parts.append(_text_block(block, block_path, "a user message"))
        elif kind == "image":
            parts.append(_image_block(block, block_path))
            has_image = True
        else:
            conversation.messages.append(_tool_result(block, block_path, conversation.call_ids))
    if parts:
        if has_image:
            conversation.images.append(len(conversation.messages))
        conversation.messages.append({"role": "user", "content": parts})


def _assistant_turn(content: object, path: str, conversation: _Conversation) -> None:
    if type(content) is str:
        conversation.messages.append({"role": "assistant", "content": content})
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
            calls.append(_tool_use(block, block_path, conversation.call_ids))
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
        conversation.thinking[len(conversation.messages)] = tuple(thinking)
    conversation.messages.append(message)


def _string(block: dict[str, Any], key: str, path: str) -> str:
    value = block.get(key)
    if type(value) is not str:
        _missing_or_wrong(value, f"{path}.{key}", "a string")
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
        _missing_or_wrong(source, source_path, "an object with type base64 or url")
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
        _missing_or_wrong(kind, f"{source_path}.type", "base64 or url")
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
        _missing_or_wrong(arguments, f"{path}.input", "an object")
    try:
        serialised = orjson.dumps(arguments).decode()
    except orjson.JSONEncodeError as exc:  # an integer beyond 64 bits
        raise InvalidRequest(f"{path}.input holds a number too large to forward.", f"{path}.input") from exc
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": serialised}}


def _tools(value: object) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    if value is None:
        return [], ()
    if type(value) is not list or len(value) > MAX_TOOLS:
        raise InvalidRequest(f"tools must be an array of at most {MAX_TOOLS} tools.", "tools")
    tools: list[dict[str, Any]] = []
    names: dict[str, None] = {}
    for index, tool in enumerate(value):
        path = f"tools[{index}]"
        if type(tool) is not dict:
            raise InvalidRequest(f"{path} must be an object with name and input_schema.", path)
        check_fields(tool, _TOOL_FIELDS, path, "a tool")
        if tool.get("type") not in (None, "custom"):
            raise InvalidRequest(
                f"{path}.type must be custom (or absent): Anthropic's server tools are not served here.", f"{path}.type"
            )
        name = tool.get("name")
        if type(name) is not str or _NAME.fullmatch(name) is None:
            _missing_or_wrong(name, f"{path}.name", "1 to 64 letters, digits, underscores or dashes")
        if name in names:
            raise InvalidRequest(f"{path}.name {name!r} is used by another tool.", f"{path}.name")
        names[name] = None
        schema = tool.get("input_schema")
        if type(schema) is not dict:
            _missing_or_wrong(schema, f"{path}.input_schema", "a JSON schema object")
        function: dict[str, Any] = {"name": name, "parameters": schema}
        description = tool.get("description")
        if description is not None:
            if type(description) is not str:
                raise InvalidRequest(f"{path}.description must be a string.", f"{path}.description")
            function["description"] = description
        tools.append({"type": "function", "function": function})
    return tools, tuple(names)


def _tool_choice(value: object, names: tuple[str, ...]) -> tuple[ToolChoice | None, str | None, bool | None]:
    if value is None:
        return None, None, None
    if type(value) is not dict:
        raise InvalidRequest('tool_choice must be an object such as {"type": "auto"}.', "tool_choice")
    check_fields(value, _TOOL_CHOICE_FIELDS, "tool_choice", "tool_choice")
    kind = value.get("type")
    if type(kind) is not str or kind not in _TOOL_CHOICES:
        _missing_or_wrong(kind, "tool_choice.type", "one of auto, any, tool, none")
    name = value.get("name")
    if kind == "tool":
        if type(name) is not str or name not in names:
            raise InvalidRequest("tool_choice.name must name one of the tools.", "tool_choice.name")
    elif name is not None:
        raise InvalidRequest("tool_choice.name is only allowed with type tool.", "tool_choice.name")
    if kind in ("any", "tool") and not names:
        raise InvalidRequest(f"tool_choice.type {kind} needs tools.", "tool_choice.type")
    disable = value.get("disable_parallel_tool_use")
    if disable is not None and type(disable) is not bool:
        raise InvalidRequest(
            "tool_choice.disable_parallel_tool_use must be a boolean.", "tool_choice.disable_parallel_tool_use"
        )
    if not names:
        return None, None, None  # auto or none without tools: nothing to choose from
    return _TOOL_CHOICES[kind], name, False if disable else None


def _chat_tool_choice(choice: ToolChoice | None, name: str | None) -> str | dict[str, Any] | None:
    if choice == "function":
        return {"type": "function", "function": {"name": name}}
    return choice


def _boolean(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None or type(value) is bool:
        return value or False
    raise InvalidRequest(f"{name} must be a boolean (true or false).", name)


def _unit_number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if (type(value) is float or type(value) is int) and 0 <= value <= 1:
        return value
    raise InvalidRequest(f"{name} must be a number between 0 and 1.", name)


def _top_k(value: object) -> int | None:
    if value is None or (type(value) is int and value >= 0):
        return value
    raise InvalidRequest("top_k must be an integer of at least 0.", "top_k")


def _stop_sequences(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if type(value) is not list:
        raise InvalidRequest("stop_sequences must be an array of non-empty strings.", "stop_sequences")
    for index, item in enumerate(value):
        if type(item) is not str or not item:
            raise InvalidRequest(f"stop_sequences[{index}] must be a non-empty string.", f"stop_sequences[{index}]")
    return tuple(value)


def _user(metadata: object) -> str | None:
    if metadata is None:
        return None
    if type(metadata) is not dict:
        raise InvalidRequest('metadata must be an object such as {"user_id": "..."}.', "metadata")
    check_fields(metadata, _METADATA_FIELDS, "metadata", "metadata")
    user = metadata.get("user_id")
    if user is None or (type(user) is str and len(user) <= MAX_IDENTIFIER_CHARS):
        return user
    raise InvalidRequest(
        f"metadata.user_id must be a string of at most {MAX_IDENTIFIER_CHARS} characters.", "metadata.user_id"
    )


def _thinking(value: object, max_tokens: int) -> dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is not dict:
        example = '{"type": "enabled", "budget_tokens": 2048}'
        raise InvalidRequest(f"thinking must be an object such as {example}.", "thinking")
    check_fields(value, _THINKING_CONFIG_FIELDS, "thinking", "thinking")
    kind = value.get("type")
    if type(kind) is not str or kind not in _THINKING_TYPES:
        _missing_or_wrong(kind, "thinking.type", "one of " + ", ".join(_THINKING_TYPES))
    budget = value.get("budget_tokens")
    if kind == "enabled":
        if type(budget) is not int or not MIN_THINKING_BUDGET <= budget < max_tokens:
            raise InvalidRequest(
                f"thinking.budget_tokens must be an integer of at least {MIN_THINKING_BUDGET:,} and below max_tokens.",
                "thinking.budget_tokens",
            )
    elif budget is not None:
        raise InvalidRequest("thinking.budget_tokens is only allowed with type enabled.", "thinking.budget_tokens")
    display = value.get("display")
    if display is not None and display not in ("summarized", "omitted"):
        raise InvalidRequest("thinking.display must be summarized or omitted.", "thinking.display")
    return dict(value)
