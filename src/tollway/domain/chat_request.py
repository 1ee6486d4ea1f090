"""A POST /v1/chat/completions body validated into a canonical ``ChatRequest`` (SPEC §7.2), and the prompt bound
T_p that holds are sized from (SPEC §9.3).

Hand-written checks rather than a pydantic model: every error must name the JSON path of its cause, and this runs
on every inference call (a typical small body validates in about 10 µs). Optional fields given as ``null`` count
as absent, as in OpenAI's API. Booleans are never numbers, and integer fields reject ``1.0`` and ``1e2``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

import orjson

from tollway.domain.chat_messages import check_fields, validate_messages
from tollway.errors import InvalidRequest, UnsupportedParameter

ToolChoice = Literal["none", "auto", "required", "function"]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]
ServiceTier = Literal["auto", "default", "flex", "priority"]
Verbosity = Literal["low", "medium", "high"]

MAX_CHOICES: Final = 8
MAX_STOP_SEQUENCES: Final = 4
MAX_TOOLS: Final = 128
MAX_TOP_LOGPROBS: Final = 20
MAX_LOGIT_BIAS_KEYS: Final = 300
MAX_METADATA_KEYS: Final = 16
MAX_METADATA_KEY_CHARS: Final = 64
MAX_METADATA_VALUE_CHARS: Final = 512
MAX_IDENTIFIER_CHARS: Final = 256  # user, agent_address, prompt_cache_key, safety_identifier
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

# SPEC §9.3: fixed allowances added to the serialised sizes.
PROMPT_BOUND_BASE: Final = 32
PROMPT_BOUND_PER_MESSAGE: Final = 16

_FIELDS: Final = frozenset(
    {
        "model", "messages", "temperature", "top_p", "frequency_penalty", "presence_penalty", "n", "stop",
        "max_tokens", "max_completion_tokens", "stream", "stream_options", "tools", "tool_choice",
        "parallel_tool_calls", "response_format", "seed", "user", "logprobs", "top_logprobs", "logit_bias",
        "reasoning_effort", "metadata", "agent_address", "web_search", "planner_mode", "study_mode", "store",
        "service_tier", "verbosity", "prompt_cache_key", "safety_identifier", "modalities", "audio", "prediction",
        "web_search_options",
    }
)  # fmt: skip
REQUEST_FIELDS: Final = _FIELDS  # the top-level fields the OpenAPI document lists (http/openapi)
_STREAM_OPTIONS_FIELDS: Final = frozenset({"include_usage"})
_TOOL_FIELDS: Final = frozenset({"type", "function"})
_FUNCTION_FIELDS: Final = frozenset({"name", "description", "parameters", "strict"})
_TOOL_CHOICE_FIELDS: Final = frozenset({"type", "function"})
_TOOL_CHOICE_FUNCTION_FIELDS: Final = frozenset({"name"})
_PLAIN_FORMAT_FIELDS: Final = frozenset({"type"})
_SCHEMA_FORMAT_FIELDS: Final = frozenset({"type", "json_schema"})
_JSON_SCHEMA_FIELDS: Final = frozenset({"name", "description", "schema", "strict"})
_TOOL_MODES: Final = frozenset({"none", "auto", "required"})
_REASONING_EFFORTS: Final = ("none", "minimal", "low", "medium", "high")
_SERVICE_TIERS: Final = ("auto", "default", "flex", "priority")
_VERBOSITIES: Final = ("low", "medium", "high")
# Tool and json_schema names, as OpenAI documents them; fullmatch, so a trailing newline cannot slip through `$`.
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat completion request. ``body`` is the request as received (validated, not rewritten) for
    adapters that forward it; the typed fields are the same values normalised: ``None`` when absent or null,
    ``max_tokens``/``max_completion_tokens`` of 0 as ``None``, ``stop`` as a tuple."""

    body: dict[str, Any]
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    n: int
    output_limit: int | None  # max_completion_tokens, else max_tokens; None when absent or 0
    max_tokens: int | None
    max_completion_tokens: int | None
    temperature: float | None
    top_p: float | None
    frequency_penalty: float | None
    presence_penalty: float | None
    stop: tuple[str, ...]
    tools: list[dict[str, Any]]  # [] when absent
    tool_names: tuple[str, ...]
    tool_choice: ToolChoice | None
    tool_choice_name: str | None  # the forced function when tool_choice is "function"
    parallel_tool_calls: bool | None
    response_format: dict[str, Any] | None
    seed: int | None
    user: str | None
    logprobs: bool
    top_logprobs: int | None
    logit_bias: dict[str, float] | None
    reasoning_effort: ReasoningEffort | None
    metadata: dict[str, str]  # recorded on the usage log, never forwarded
    agent_address: str | None
    web_search: bool | None
    planner_mode: bool | None
    study_mode: bool | None
    store: bool | None
    service_tier: ServiceTier | None
    verbosity: Verbosity | None
    prompt_cache_key: str | None
    safety_identifier: str | None
    modalities: list[Any] | None
    audio: dict[str, Any] | None
    prediction: dict[str, Any] | None
    web_search_options: dict[str, Any] | None
    image_messages: tuple[int, ...]  # indexes of the messages with image_url parts
    # Set only by Anthropic's Messages API inbound (/v1/messages, SPEC §19), never forwarded from ``body``:
    top_k: int | None = None
    thinking: dict[str, Any] | None = None  # Anthropic's thinking config as validated
    # Assistant message index -> the thinking / redacted_thinking blocks (with signatures) that opened that turn;
    # only the anthropic adapter sends them back, the other kinds drop them.
    thinking_blocks: dict[int, tuple[dict[str, Any], ...]] = field(default_factory=dict)

    @property
    def has_tools(self) -> bool:
        return bool(self.tools)

    def prompt_token_bound(self, image_allowance_tokens: int) -> int:
        """SPEC §9.3: T_p = 32 + Σ over messages (16 + B(message)) + B(tools) + B(response_format), where B is
        the UTF-8 length of the compact JSON with non-ASCII unescaped, and each ``image_url`` part counts
        ``image_allowance_tokens`` instead of its bytes (the separators around it still count). Not capped at the
        context window: that depends on the row."""
        messages = self.messages
        extra = 0
        if self.image_messages:
            messages = list(messages)
            for index in self.image_messages:
                message = messages[index]
                parts = message["content"]
                kept = [part for part in parts if part["type"] != "image_url"]
                removed_separators = (len(parts) - 1) - max(len(kept) - 1, 0)
                extra += (len(parts) - len(kept)) * image_allowance_tokens + removed_separators
                messages[index] = {**message, "content": kept}
        # One serialisation of the whole list: its brackets and the commas between messages are not B(message).
        message_bytes = _json_size(messages) - len(messages) - 1
        bound = PROMPT_BOUND_BASE + PROMPT_BOUND_PER_MESSAGE * len(messages) + message_bytes + extra
        for key in ("tools", "response_format"):
            value = self.body.get(key)
            if value is not None:
                bound += _json_size(value)
        for blocks in self.thinking_blocks.values():
            bound += _json_size(blocks)
        return bound


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    """Validate a chat completion body (SPEC §7.2); raise ``InvalidRequest`` naming the first fault found."""
    check_fields(body, _FIELDS, "", "the chat completion request")
    model = body.get("model")
    if type(model) is not str:
        raise InvalidRequest("model is required." if model is None else "model must be a string.", "model")
    image_messages = validate_messages(body.get("messages"))
    stream = _boolean(body, "stream") or False
    max_tokens = _token_limit(body, "max_tokens")
    max_completion_tokens = _token_limit(body, "max_completion_tokens")
    if max_tokens is not None and max_completion_tokens is not None and max_tokens != max_completion_tokens:
        raise InvalidRequest(
            "max_tokens and max_completion_tokens must be equal when both are given; send only one.",
            "max_completion_tokens",
        )
    tools, tool_names = _tools(body.get("tools"))
    tool_choice, tool_choice_name = _tool_choice(body.get("tool_choice"), tool_names)
    logprobs = _boolean(body, "logprobs") or False
    return ChatRequest(
        body=body,
        model=model,
        messages=body["messages"],
        stream=stream,
        include_usage=_include_usage(body.get("stream_options"), stream),
        n=_integer(body, "n", 1, MAX_CHOICES) or 1,
        output_limit=max_completion_tokens if max_completion_tokens is not None else max_tokens,
        max_tokens=max_tokens,
        max_completion_tokens=max_completion_tokens,
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        frequency_penalty=_number(body, "frequency_penalty", -2, 2),
        presence_penalty=_number(body, "presence_penalty", -2, 2),
        stop=_stop(body.get("stop")),
        tools=tools,
        tool_names=tool_names,
        tool_choice=tool_choice,
        tool_choice_name=tool_choice_name,
        parallel_tool_calls=_boolean(body, "parallel_tool_calls"),
        response_format=_response_format(body.get("response_format")),
        seed=_seed(body.get("seed")),
        user=_identifier(body, "user"),
        logprobs=logprobs,
        top_logprobs=_top_logprobs(body.get("top_logprobs"), logprobs),
        logit_bias=_logit_bias(body.get("logit_bias")),
        reasoning_effort=cast("ReasoningEffort | None", _choice(body, "reasoning_effort", _REASONING_EFFORTS)),
        metadata=_metadata(body.get("metadata")),
        agent_address=_identifier(body, "agent_address"),
        web_search=_boolean(body, "web_search"),
        planner_mode=_boolean(body, "planner_mode"),
        study_mode=_boolean(body, "study_mode"),
        store=_boolean(body, "store"),
        service_tier=cast("ServiceTier | None", _choice(body, "service_tier", _SERVICE_TIERS)),
        verbosity=cast("Verbosity | None", _choice(body, "verbosity", _VERBOSITIES)),
        prompt_cache_key=_identifier(body, "prompt_cache_key"),
        safety_identifier=_identifier(body, "safety_identifier"),
        modalities=_typed(body, "modalities", list, "an array"),
        audio=_typed(body, "audio", dict, "an object"),
        prediction=_typed(body, "prediction", dict, "an object"),
        web_search_options=_typed(body, "web_search_options", dict, "an object"),
        image_messages=image_messages,
    )


def _json_size(value: object) -> int:
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError:  # an integer beyond 64 bits (the exact JSON parser keeps up to 4,300 digits)
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _number(body: dict[str, Any], name: str, low: int, high: int) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    kind = type(value)
    if (kind is float or kind is int) and low <= value <= high:
        return cast(float, value)
    raise InvalidRequest(f"{name} must be a number between {low} and {high}.", name)


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if type(value) is int and low <= value <= high:
        return value
    raise InvalidRequest(f"{name} must be an integer between {low} and {high}.", name)


def _token_limit(body: dict[str, Any], name: str) -> int | None:
    """An output-token limit: an integer >= 0, where 0 means absent."""
    value = body.get(name)
    if value is None:
        return None
    if type(value) is int and value >= 0:
        return value or None
    raise InvalidRequest(f"{name} must be an integer greater than or equal to 0 (0 means no limit given).", name)


def _boolean(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None or type(value) is bool:
        return value
    raise InvalidRequest(f"{name} must be a boolean (true or false).", name)


def _identifier(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or (type(value) is str and len(value) <= MAX_IDENTIFIER_CHARS):
        return value
    raise InvalidRequest(f"{name} must be a string of at most {MAX_IDENTIFIER_CHARS} characters.", name)


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = body.get(name)
    if value is None or (type(value) is str and value in allowed):
        return value
    raise InvalidRequest(f"{name} must be one of {', '.join(allowed)}.", name)


def _typed(body: dict[str, Any], name: str, kind: type[Any], expected: str) -> Any:
    """Newer OpenAI fields whose shape is OpenAI's to define: validated for type only (SPEC §7.2)."""
    value = body.get(name)
    if value is None or type(value) is kind:
        return value
    raise InvalidRequest(f"{name} must be {expected}.", name)


def _seed(value: object) -> int | None:
    if value is None or (type(value) is int and INT64_MIN <= value <= INT64_MAX):
        return value
    raise InvalidRequest(f"seed must be an integer between {INT64_MIN} and {INT64_MAX} (signed 64-bit).", "seed")


def _include_usage(options: object, stream: bool) -> bool:
    if options is None:
        return False
    if not stream:
        raise InvalidRequest("stream_options is only allowed when stream is true.", "stream_options")
    if type(options) is not dict:
        raise InvalidRequest('stream_options must be an object such as {"include_usage": true}.', "stream_options")
    check_fields(options, _STREAM_OPTIONS_FIELDS, "stream_options", "stream_options")
    include_usage = options.get("include_usage")
    if include_usage is None or type(include_usage) is bool:
        return include_usage or False
    raise InvalidRequest("stream_options.include_usage must be a boolean.", "stream_options.include_usage")


def _stop(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if type(value) is str and value:
        return (value,)
    if type(value) is list and 1 <= len(value) <= MAX_STOP_SEQUENCES:
        for index, item in enumerate(value):
            if type(item) is not str or not item:
                raise InvalidRequest(f"stop[{index}] must be a non-empty string.", f"stop[{index}]")
        return tuple(value)
    raise InvalidRequest(
        f"stop must be a non-empty string or an array of 1 to {MAX_STOP_SEQUENCES} non-empty strings.", "stop"
    )


def _tools(value: object) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    if value is None:
        return [], ()
    if type(value) is not list or len(value) > MAX_TOOLS:
        raise InvalidRequest(f"tools must be an array of at most {MAX_TOOLS} function tools.", "tools")
    names: dict[str, None] = {}
    for index, tool in enumerate(value):
        path = f"tools[{index}]"
        if type(tool) is not dict:
            raise InvalidRequest(f'{path} must be an object such as {{"type": "function", "function": {{...}}}}.', path)
        if tool.get("type") == "mcp":
            raise UnsupportedParameter(
                f'{path}.type "mcp" is not supported in chat completions: the gateway runs MCP tools in '
                "POST /v1/responses; send the request there.",
                f"{path}.type",
            )
        check_fields(tool, _TOOL_FIELDS, path, "a tool")
        if tool.get("type") != "function":
            raise InvalidRequest(f'{path}.type must be "function".', f"{path}.type")
        function = tool.get("function")
        if type(function) is not dict:
            message = "is required" if function is None else "must be an object with a name"
            raise InvalidRequest(f"{path}.function {message}.", f"{path}.function")
        check_fields(function, _FUNCTION_FIELDS, f"{path}.function", "a function tool")
        name = function.get("name")
        if type(name) is not str or _NAME.fullmatch(name) is None:
            raise InvalidRequest(
                f"{path}.function.name must be 1 to 64 letters, digits, underscores or dashes.", f"{path}.function.name"
            )
        if name in names:
            raise InvalidRequest(
                f"{path}.function.name {name!r} is already used by another tool; tool names must be unique.",
                f"{path}.function.name",
            )
        names[name] = None
        _optional_type(function, "description", str, "a string", f"{path}.function")
        _optional_type(function, "parameters", dict, "a JSON Schema object", f"{path}.function")
        _optional_type(function, "strict", bool, "a boolean", f"{path}.function")
    return value, tuple(names)


def _optional_type(obj: dict[str, Any], key: str, kind: type[Any], expected: str, path: str) -> None:
    value = obj.get(key)
    if value is not None and type(value) is not kind:
        raise InvalidRequest(f"{path}.{key} must be {expected}.", f"{path}.{key}")


def _tool_choice(value: object, tool_names: tuple[str, ...]) -> tuple[ToolChoice | None, str | None]:
    if value is None:
        return None, None
    if type(value) is str and value in _TOOL_MODES:
        mode, name = cast(ToolChoice, value), None
    elif type(value) is dict:
        check_fields(value, _TOOL_CHOICE_FIELDS, "tool_choice", "tool_choice")
        if value.get("type") != "function":
            raise InvalidRequest('tool_choice.type must be "function".', "tool_choice.type")
        function = value.get("function")
        if type(function) is not dict:
            raise InvalidRequest("tool_choice.function must be an object with a name.", "tool_choice.function")
        check_fields(function, _TOOL_CHOICE_FUNCTION_FIELDS, "tool_choice.function", "tool_choice.function")
        name = function.get("name")
        if type(name) is not str or name not in tool_names:
            raise InvalidRequest(
                "tool_choice.function.name must be the name of a function declared in tools.",
                "tool_choice.function.name",
            )
        mode = "function"
    else:
        raise InvalidRequest(
            'tool_choice must be none, auto, required or {"type": "function", "function": {"name": ...}}.',
            "tool_choice",
        )
    if mode != "none" and not tool_names:
        raise InvalidRequest(f"tool_choice {mode!r} requires tools; declare at least one tool.", "tool_choice")
    return mode, name


def _response_format(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise InvalidRequest("response_format must be an object with a type.", "response_format")
    kind = value.get("type")
    if kind == "text" or kind == "json_object":
        check_fields(value, _PLAIN_FORMAT_FIELDS, "response_format", f"a {kind} response_format")
    elif kind == "json_schema":
        check_fields(value, _SCHEMA_FORMAT_FIELDS, "response_format", "a json_schema response_format")
        _json_schema(value.get("json_schema"))
    else:
        raise InvalidRequest("response_format.type must be text, json_object or json_schema.", "response_format.type")
    return value


def _json_schema(value: object) -> None:
    path = "response_format.json_schema"
    if type(value) is not dict:
        message = "is required" if value is None else "must be an object with name and schema"
        raise InvalidRequest(f"{path} {message}.", path)
    check_fields(value, _JSON_SCHEMA_FIELDS, path, "json_schema")
    name = value.get("name")
    if type(name) is not str or _NAME.fullmatch(name) is None:
        raise InvalidRequest(f"{path}.name must be 1 to 64 letters, digits, underscores or dashes.", f"{path}.name")
    if type(value.get("schema")) is not dict:
        message = "is required" if value.get("schema") is None else "must be a JSON Schema object"
        raise InvalidRequest(f"{path}.schema {message}.", f"{path}.schema")
    _optional_type(value, "description", str, "a string", path)
    _optional_type(value, "strict", bool, "a boolean", path)


def _top_logprobs(value: object, logprobs: bool) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_TOP_LOGPROBS:
        raise InvalidRequest(f"top_logprobs must be an integer between 0 and {MAX_TOP_LOGPROBS}.", "top_logprobs")
    if not logprobs:
        raise InvalidRequest("top_logprobs is only allowed when logprobs is true.", "top_logprobs")
    return value


def _logit_bias(value: object) -> dict[str, float] | None:
    if value is None:
        return None
    if type(value) is not dict or len(value) > MAX_LOGIT_BIAS_KEYS:
        raise InvalidRequest(
            f"logit_bias must be an object of at most {MAX_LOGIT_BIAS_KEYS} token ids mapped to biases.", "logit_bias"
        )
    for token, bias in value.items():
        if not (token.isascii() and token.isdigit()):
            shown = token if len(token) <= 64 else token[:64] + "..."
            raise InvalidRequest(
                f"logit_bias key {shown!r} must be a token id written as a string of digits.", f"logit_bias.{shown}"
            )
        kind = type(bias)
        if not ((kind is int or kind is float) and -100 <= bias <= 100):
            raise InvalidRequest(f"logit_bias.{token} must be a number between -100 and 100.", f"logit_bias.{token}")
    return value


def _metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if type(value) is not dict or len(value) > MAX_METADATA_KEYS:
        raise InvalidRequest(
            f"metadata must be an object of at most {MAX_METADATA_KEYS} string keys mapped to strings.", "metadata"
        )
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            raise InvalidRequest(
                f"metadata keys must be at most {MAX_METADATA_KEY_CHARS} characters; "
                f"{key[:MAX_METADATA_KEY_CHARS]!r}... is longer.",
                "metadata",
            )
        if type(item) is not str or len(item) > MAX_METADATA_VALUE_CHARS:
            raise InvalidRequest(
                f"metadata.{key} must be a string of at most {MAX_METADATA_VALUE_CHARS} characters.", f"metadata.{key}"
            )
    return value
