"""A POST /v1/messages body (Anthropic's Messages API inbound, SPEC §19) validated and translated into the canonical
``ChatRequest`` that every provider kind serves (SPEC §7.4). Pure; no I/O.

The conversation is ``messages_turns``; here: ``tools`` become function tools, ``tool_choice`` auto/any/tool/none
becomes auto/required/function/none (``disable_parallel_tool_use`` as ``parallel_tool_calls: false``),
``stop_sequences`` the ``stop`` list, ``metadata.user_id`` the ``user``; ``top_k`` and ``thinking`` are kept as typed
fields that only the anthropic and gemini adapters read. Errors name the Anthropic JSON path.
"""

from __future__ import annotations

import re
from typing import Any, Final

from tollway.domain import messages_turns
from tollway.domain.chat_messages import check_fields
from tollway.domain.chat_request import MAX_IDENTIFIER_CHARS, MAX_TOOLS, ChatRequest, ToolChoice
from tollway.domain.messages_turns import missing_or_wrong
from tollway.errors import InvalidRequest

MIN_THINKING_BUDGET: Final = 1_024

_FIELDS: Final = frozenset(
    {
        "model", "max_tokens", "system", "messages", "tools", "tool_choice", "stop_sequences", "temperature",
        "top_p", "top_k", "thinking", "metadata", "stream",
    }
)  # fmt: skip
REQUEST_FIELDS: Final = _FIELDS  # the top-level fields the OpenAPI document lists (http/openapi)
_TOOL_FIELDS: Final = frozenset({"type", "name", "description", "input_schema", "cache_control"})
_TOOL_CHOICE_FIELDS: Final = frozenset({"type", "name", "disable_parallel_tool_use"})
_THINKING_CONFIG_FIELDS: Final = frozenset({"type", "budget_tokens", "display"})
_METADATA_FIELDS: Final = frozenset({"user_id"})
_TOOL_CHOICES: Final[dict[str, ToolChoice]] = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}
_THINKING_TYPES: Final = ("enabled", "disabled", "adaptive")
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def parse_messages_request(body: dict[str, Any]) -> ChatRequest:
    """Validate an Anthropic Messages body; raise ``InvalidRequest`` naming the JSON path of the first fault."""
    check_fields(body, _FIELDS, "", "the messages request")
    model = body.get("model")
    if type(model) is not str or not model:
        missing_or_wrong(model, "model", "a non-empty string")
    max_tokens = body.get("max_tokens")
    if type(max_tokens) is not int or max_tokens < 1:
        missing_or_wrong(max_tokens, "max_tokens", "an integer of at least 1")
    conversation = messages_turns.conversation(body.get("system"), body.get("messages"))
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
            missing_or_wrong(name, f"{path}.name", "1 to 64 letters, digits, underscores or dashes")
        if name in names:
            raise InvalidRequest(f"{path}.name {name!r} is used by another tool.", f"{path}.name")
        names[name] = None
        schema = tool.get("input_schema")
        if type(schema) is not dict:
            missing_or_wrong(schema, f"{path}.input_schema", "a JSON schema object")
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
        missing_or_wrong(kind, "tool_choice.type", "one of auto, any, tool, none")
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
        missing_or_wrong(kind, "thinking.type", "one of " + ", ".join(_THINKING_TYPES))
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


def in_anthropic_terms(error: InvalidRequest, body: dict[str, Any]) -> InvalidRequest:
    """An error found after translation (a provider's refusal of §7.4 at ``messages[i]...``) renamed to the path in
    the Anthropic body ``body`` was parsed from; the conversation is translated again, off the hot path."""
    param = error.param
    if param is None or not param.startswith("messages["):
        return error
    path = messages_turns.conversation(body.get("system"), body.get("messages")).anthropic_path(param)
    error.message = error.message.replace(param, path)
    error.param = path
    error.args = (error.message,)
    return error
