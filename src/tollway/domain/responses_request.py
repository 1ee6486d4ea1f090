"""A ``POST /v1/responses`` body validated into a canonical ``ResponsesRequest`` (SPEC §7.6).

Same approach as ``chat_request``: hand-written checks whose errors name the JSON path of the cause; unknown fields
are rejected (SPEC §1.2); ``null`` counts as absent. Input items are normalised into the canonical item shapes of
``responses_items`` (a string input becomes one user message), which is what is stored and rebuilt later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from tollway.domain.chat_messages import check_fields
from tollway.domain.chat_request import (
    _NAME,
    MAX_TOOLS,
    _boolean,
    _identifier,
    _metadata,
    _number,
    _optional_type,
)
from tollway.domain.mcp_tools import McpTool, check_labels, parse_mcp_tool
from tollway.domain.responses_items import parse_input
from tollway.domain.responses_params import ASI1_FIELDS, PARAMS, SUMMARIES, VERBOSITIES, ResponsesOptions, parse_options
from tollway.domain.threads import parse_thread
from tollway.errors import InvalidRequest, UnsupportedParameter

_FIELDS: Final = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "previous_response_id",
        "stream", "max_output_tokens", "temperature", "top_p", "text", "response_format", "reasoning", "metadata",
        "user", "store", "thread_id", *PARAMS, *ASI1_FIELDS,
    }
)  # fmt: skip
REQUEST_FIELDS: Final = _FIELDS  # the top-level fields the OpenAPI document lists (http/openapi)
_TOOL_FIELDS: Final = frozenset({"type", "name", "description", "parameters", "strict"})
_TOOL_CHOICE_FIELDS: Final = frozenset({"type", "name"})
_MCP_CHOICE_FIELDS: Final = frozenset({"type", "server_label", "name"})
_TEXT_FIELDS: Final = frozenset({"format", "verbosity"})
_PLAIN_FORMAT_FIELDS: Final = frozenset({"type"})
_SCHEMA_FORMAT_FIELDS: Final = frozenset({"type", "name", "description", "schema", "strict"})
_CHAT_SCHEMA_FORMAT_FIELDS: Final = frozenset({"type", "json_schema"})
_JSON_SCHEMA_FIELDS: Final = frozenset({"name", "description", "schema", "strict"})
_REASONING_FIELDS: Final = frozenset({"effort", "summary", "generate_summary", "context", "mode"})
_REASONING_CONTEXTS: Final = ("auto", "current_turn", "all_turns")
_REASONING_EFFORTS: Final = ("none", "minimal", "low", "medium", "high")
_TOOL_MODES: Final = frozenset({"none", "auto", "required"})
MAX_INSTRUCTIONS_CHARS: Final = 1_048_576
MAX_RESPONSE_ID_CHARS: Final = 128


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    """A validated Responses request. ``input`` holds the canonical items of this request only (the context of
    ``previous_response_id`` is added by the service); ``text_format`` is the Responses-shaped format whichever of
    ``text.format`` or ``response_format`` carried it, and ``format_param`` names the one that did."""

    body: dict[str, Any]
    model: str
    input: list[dict[str, Any]]
    instructions: str | None
    tools: list[dict[str, Any]]  # Responses function tools, [] when absent (``mcp`` tools are in ``mcp``)
    tool_names: tuple[str, ...]
    # "none" / "auto" / "required" / {"type": "function", "name"} / {"type": "mcp", "server_label", "name"?}
    tool_choice: str | dict[str, Any] | None
    parallel_tool_calls: bool | None
    previous_response_id: str | None
    stream: bool
    max_output_tokens: int | None
    temperature: float | None
    top_p: float | None
    text_format: dict[str, Any] | None
    format_param: str
    reasoning_effort: str | None
    metadata: dict[str, str]
    user: str | None
    store: bool
    reasoning_summary: str | None = None  # reasoning.summary (or its deprecated alias generate_summary)
    verbosity: str | None = None  # text.verbosity
    options: ResponsesOptions = field(default_factory=ResponsesOptions)  # the parity fields of SPEC §7.6
    thread_id: str | None = None  # the agent thread (SPEC §16.4), named by thread_id or its alias conversation
    mcp: tuple[McpTool, ...] = ()  # the ``{type: "mcp"}`` tools (SPEC §16.3), run by the gateway's tool loop
    declared_tools: list[dict[str, Any]] | None = None  # every tool as declared, credentials removed (echoed)

    @property
    def echoed_tools(self) -> list[dict[str, Any]]:
        return self.tools if self.declared_tools is None else self.declared_tools


def parse_responses_request(body: dict[str, Any]) -> ResponsesRequest:
    """Validate a Responses body (SPEC §7.6); raise ``InvalidRequest`` naming the first fault found."""
    check_fields(body, _FIELDS, "", "the responses request")
    model = body.get("model")
    if type(model) is not str or not model:
        raise InvalidRequest("model is required." if model is None else "model must be a non-empty string.", "model")
    items = parse_input(body.get("input"))
    instructions = body.get("instructions")
    if instructions is not None and (type(instructions) is not str or len(instructions) > MAX_INSTRUCTIONS_CHARS):
        raise InvalidRequest(
            f"instructions must be a string of at most {MAX_INSTRUCTIONS_CHARS:,} characters.", "instructions"
        )
    tools, tool_names, mcp, declared = _tools(body.get("tools"))
    text_format, format_param = _format(body)
    previous = body.get("previous_response_id")
    if previous is not None and (type(previous) is not str or not 1 <= len(previous) <= MAX_RESPONSE_ID_CHARS):
        raise InvalidRequest("previous_response_id must be the id of a stored response.", "previous_response_id")
    store = _boolean(body, "store")
    options = parse_options(body)
    thread_id = parse_thread(body)
    _identifier(body, "agent_address")
    for name in ASI1_FIELDS[1:]:
        _boolean(body, name)
    effort, summary = _reasoning(body.get("reasoning"))
    return ResponsesRequest(
        body=body,
        model=model,
        input=items,
        instructions=instructions,
        tools=tools,
        tool_names=tool_names,
        tool_choice=_tool_choice(body.get("tool_choice"), tool_names, mcp),
        parallel_tool_calls=_boolean(body, "parallel_tool_calls"),
        previous_response_id=previous,
        stream=_boolean(body, "stream") or False,
        max_output_tokens=_max_output_tokens(body.get("max_output_tokens")),
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        text_format=text_format,
        format_param=format_param,
        reasoning_effort=effort,
        metadata=_metadata(body.get("metadata")),
        user=_identifier(body, "user"),
        store=True if store is None else store,
        reasoning_summary=summary,
        verbosity=_verbosity(body.get("text")),
        options=options,
        thread_id=thread_id,
        mcp=mcp,
        declared_tools=declared if mcp else None,
    )


def _max_output_tokens(value: object) -> int | None:
    """A positive integer; below a model's ``min_output_tokens`` is the 422 of SPEC §8 (checked per row)."""
    if value is None:
        return None
    if type(value) is int and value >= 1:
        return value
    raise InvalidRequest("max_output_tokens must be an integer greater than or equal to 1.", "max_output_tokens")


def _tools(
    value: object,
) -> tuple[list[dict[str, Any]], tuple[str, ...], tuple[McpTool, ...], list[dict[str, Any]]]:
    """(function tools, their names, ``mcp`` tools, every tool as echoed without credentials)."""
    if value is None:
        return [], (), (), []
    if type(value) is not list or len(value) > MAX_TOOLS:
        raise InvalidRequest(f"tools must be an array of at most {MAX_TOOLS} tools.", "tools")
    names: dict[str, None] = {}
    functions: list[dict[str, Any]] = []
    servers: list[McpTool] = []
    declared: list[dict[str, Any]] = []
    for index, tool in enumerate(value):
        path = f"tools[{index}]"
        if type(tool) is not dict:
            raise InvalidRequest(f'{path} must be an object such as {{"type": "function", "name": ...}}.', path)
        kind = tool.get("type")
        if kind == "mcp":
            server = parse_mcp_tool(tool, index)
            servers.append(server)
            declared.append(server.echoed(tool))
            continue
        if kind != "function":
            if type(kind) is str:
                # Hosted tools (web search, file search, code interpreter, ...) are billed by the provider in ways
                # Tollway cannot meter, so they are refused rather than passed through (SPEC §7.6).
                raise UnsupportedParameter(
                    f"{path}.type {kind!r} is not supported: only function and mcp tools can be metered; "
                    'use {"type": "function", ...} or {"type": "mcp", ...}.',
                    f"{path}.type",
                )
            raise InvalidRequest(f'{path}.type must be "function" or "mcp".', f"{path}.type")
        check_fields(tool, _TOOL_FIELDS, path, "a function tool")
        name = tool.get("name")
        if type(name) is not str or _NAME.fullmatch(name) is None:
            raise InvalidRequest(f"{path}.name must be 1 to 64 letters, digits, underscores or dashes.", f"{path}.name")
        if name in names:
            raise InvalidRequest(
                f"{path}.name {name!r} is already used by another tool; tool names must be unique.", f"{path}.name"
            )
        names[name] = None
        _optional_type(tool, "description", str, "a string", path)
        _optional_type(tool, "parameters", dict, "a JSON Schema object", path)
        _optional_type(tool, "strict", bool, "a boolean", path)
        functions.append(tool)
        declared.append(tool)
    check_labels(servers)
    return functions, tuple(names), tuple(servers), declared


def _tool_choice(value: object, tool_names: tuple[str, ...], mcp: tuple[McpTool, ...]) -> str | dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is str and value in _TOOL_MODES:
        mode = value
    elif type(value) is dict and value.get("type") == "mcp":
        return _mcp_choice(value, mcp)
    elif type(value) is dict:
        check_fields(value, _TOOL_CHOICE_FIELDS, "tool_choice", "tool_choice")
        if value.get("type") != "function":
            raise InvalidRequest('tool_choice.type must be "function" or "mcp".', "tool_choice.type")
        if value.get("name") not in tool_names:
            raise InvalidRequest(
                "tool_choice.name must be the name of a function declared in tools.", "tool_choice.name"
            )
        mode = "function"
    else:
        raise InvalidRequest(
            'tool_choice must be none, auto, required, {"type": "function", "name": ...} or '
            '{"type": "mcp", "server_label": ...}.',
            "tool_choice",
        )
    if mode != "none" and not tool_names and not (mcp and mode != "function"):
        raise InvalidRequest(f"tool_choice {mode!r} requires tools; declare at least one tool.", "tool_choice")
    return value


def _mcp_choice(value: dict[str, Any], mcp: tuple[McpTool, ...]) -> dict[str, Any]:
    """OpenAI's ``{"type": "mcp", "server_label", "name"?}``: the first model turn must call that server's tool
    ``name`` (any of its tools without one). The label must be one of the request's ``mcp`` tools; the name is
    checked against the server's listing by the tool loop (``mcp_tools.forced_choice``)."""
    check_fields(value, _MCP_CHOICE_FIELDS, "tool_choice", "an mcp tool_choice")
    label = value.get("server_label")
    if type(label) is not str or label not in {tool.server_label for tool in mcp}:
        raise InvalidRequest(
            "tool_choice.server_label must be the server_label of one of the request's mcp tools.",
            "tool_choice.server_label",
        )
    name = value.get("name")
    if name is not None and (type(name) is not str or not 1 <= len(name) <= 128):
        raise InvalidRequest("tool_choice.name must be a tool name (1 to 128 characters).", "tool_choice.name")
    return value


def _format(body: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """``text.format``, or its alias ``response_format`` (Responses shape, or the chat shape with ``json_schema``)."""
    text = body.get("text")
    alias = body.get("response_format")
    if text is not None:
        if type(text) is not dict:
            raise InvalidRequest('text must be an object such as {"format": {"type": "text"}}.', "text")
        check_fields(text, _TEXT_FIELDS, "text", "text")
        if alias is not None and text.get("format") is not None:
            raise InvalidRequest("Send either text.format or its alias response_format, not both.", "response_format")
        if text.get("format") is not None:
            return _format_value(text["format"], "text.format"), "text.format"
    if alias is not None:
        return _format_value(alias, "response_format"), "response_format"
    return None, "text.format"


def _format_value(value: object, path: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise InvalidRequest(f"{path} must be an object with a type.", path)
    kind = value.get("type")
    if kind == "text" or kind == "json_object":
        check_fields(value, _PLAIN_FORMAT_FIELDS, path, f"a {kind} format")
        return value
    if kind != "json_schema":
        raise InvalidRequest(f"{path}.type must be text, json_object or json_schema.", f"{path}.type")
    if "json_schema" in value:  # the chat-completions shape, accepted on the alias for convenience
        check_fields(value, _CHAT_SCHEMA_FORMAT_FIELDS, path, "a json_schema format")
        inner = value["json_schema"]
        inner_path = f"{path}.json_schema"
        if type(inner) is not dict:
            raise InvalidRequest(f"{inner_path} must be an object with name and schema.", inner_path)
        check_fields(inner, _JSON_SCHEMA_FIELDS, inner_path, "json_schema")
        value = {"type": "json_schema", **inner}
        _schema_fields(value, inner_path)
        return value
    check_fields(value, _SCHEMA_FORMAT_FIELDS, path, "a json_schema format")
    _schema_fields(value, path)
    return value


def _schema_fields(value: dict[str, Any], path: str) -> None:
    name = value.get("name")
    if type(name) is not str or _NAME.fullmatch(name) is None:
        raise InvalidRequest(f"{path}.name must be 1 to 64 letters, digits, underscores or dashes.", f"{path}.name")
    schema = value.get("schema")
    if type(schema) is not dict:
        message = "is required" if schema is None else "must be a JSON Schema object"
        raise InvalidRequest(f"{path}.schema {message}.", f"{path}.schema")
    _optional_type(value, "description", str, "a string", path)
    _optional_type(value, "strict", bool, "a boolean", path)


def _reasoning(value: object) -> tuple[str | None, str | None]:
    """(``reasoning.effort``, ``reasoning.summary``); ``generate_summary`` is OpenAI's deprecated alias of
    ``summary``. ``context`` and ``mode`` are checked for type and only forwarded to openai providers."""
    if value is None:
        return None, None
    if type(value) is not dict:
        raise InvalidRequest('reasoning must be an object such as {"effort": "low"}.', "reasoning")
    check_fields(value, _REASONING_FIELDS, "reasoning", "reasoning")
    effort = value.get("effort")
    if effort is not None and (type(effort) is not str or effort not in _REASONING_EFFORTS):
        raise InvalidRequest(f"reasoning.effort must be one of {', '.join(_REASONING_EFFORTS)}.", "reasoning.effort")
    for key in ("summary", "generate_summary"):
        _choice(value, key, SUMMARIES, f"reasoning.{key}")
    _choice(value, "context", _REASONING_CONTEXTS, "reasoning.context")
    _optional_type(value, "mode", str, "a string", "reasoning")
    return effort, value.get("summary") or value.get("generate_summary")


def _verbosity(text: object) -> str | None:
    if type(text) is not dict:  # absent; any other type was refused by _format
        return None
    return _choice(text, "verbosity", VERBOSITIES, "text.verbosity")


def _choice(obj: dict[str, Any], key: str, allowed: tuple[str, ...], path: str) -> str | None:
    value = obj.get(key)
    if value is None or (type(value) is str and value in allowed):
        return value
    raise InvalidRequest(f"{path} must be one of {', '.join(allowed)}.", path)
