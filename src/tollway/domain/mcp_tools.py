"""``{type: "mcp"}`` tools of ``POST /v1/responses`` (SPEC §16.3) as values and rules: the tool's fields validated,
which tools a server offers and which need approval, the stable names they are offered to the model under, and
OpenAI's ``tool_choice: {"type": "mcp", "server_label", "name"?}`` as the forced function of the first model turn
(the ``mcp_*`` items are in ``mcp_items.py``). Pure.

**Names offered to the model.** Every provider sees an MCP tool as an ordinary function tool named
``<server_label>__<tool name>``. When that is not a valid function name (``[A-Za-z0-9_-]{1,64}``) or is already
taken (by a function tool of the request or an earlier MCP tool), the name is ``<label>__<tool>`` cut to 24
characters each with other characters replaced by ``_``, then ``_`` and the first 10 hex digits of
SHA-256(label NUL tool): stable across turns and requests, and collision-free in practice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tollway.domain.chat_messages import check_fields
from tollway.errors import InvalidRequest, UnsupportedParameter, UpstreamError

MAX_TOOL_CALLS_DEFAULT: Final = 32
MAX_LISTED_TOOLS: Final = 128  # tools kept from one server's listing (the chat APIs' tool limit)
MAX_DESCRIPTION_CHARS: Final = 4096
MAX_HEADERS: Final = 32
_LABEL: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FUNCTION_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_FIELDS: Final = frozenset(
    {
        "type", "server_label", "server_url", "allowed_tools", "require_approval", "headers", "server_description",
        "authorization", "connector_id", "tunnel_id", "defer_loading", "allowed_callers",
    }
)  # fmt: skip
_FILTER_FIELDS: Final = frozenset({"tool_names", "read_only"})
_APPROVAL_FIELDS: Final = frozenset({"always", "never"})


@dataclass(frozen=True, slots=True)
class ToolFilter:
    """``{tool_names?, read_only?}``: a tool matches when it is named, or (``read_only``) is annotated read-only."""

    names: tuple[str, ...] | None = None
    read_only: bool | None = None

    def matches(self, tool: Mapping[str, Any]) -> bool:
        if self.names is not None and tool.get("name") in self.names:
            return True
        if self.read_only:
            annotations = tool.get("annotations")
            return isinstance(annotations, dict) and annotations.get("readOnlyHint") is True
        return False


@dataclass(frozen=True, slots=True)
class Approval:
    """``require_approval``: ``always`` filter first, then ``never``; other tools need approval unless only an
    ``always`` filter was given (``"always"`` is the default)."""

    always: ToolFilter | None = None
    never: ToolFilter | None = None
    otherwise: bool = True

    def required(self, tool: Mapping[str, Any]) -> bool:
        if self.always is not None and self.always.matches(tool):
            return True
        if self.never is not None and self.never.matches(tool):
            return False
        return self.otherwise


ALWAYS: Final = Approval()
NEVER: Final = Approval(otherwise=False)


@dataclass(frozen=True, slots=True)
class McpTool:
    """One validated ``{type: "mcp"}`` tool. ``headers`` (with ``authorization`` as a bearer token) go to an
    external server only; they are never logged, stored or echoed."""

    index: int
    server_label: str
    server_url: str
    allowed: ToolFilter | None
    approval: Approval
    server_description: str | None
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    def offers(self, tool: Mapping[str, Any]) -> bool:
        return self.allowed is None or self.allowed.matches(tool)

    def echoed(self, tool: dict[str, Any]) -> dict[str, Any]:
        """The tool as the response echoes and stores it: without its credentials."""
        return {k: v for k, v in tool.items() if k not in ("headers", "authorization")}


def parse_mcp_tool(tool: dict[str, Any], index: int) -> McpTool:
    path = f"tools[{index}]"
    check_fields(tool, _FIELDS, path, "an mcp tool")
    for name in ("connector_id", "tunnel_id"):
        if tool.get(name) is not None:
            raise UnsupportedParameter(
                f"{path}.{name} is not supported: name the MCP server by server_url (one of this platform's MCP "
                "apps, or an external server where the platform allows them).",
                f"{path}.{name}",
            )
    label = tool.get("server_label")
    if type(label) is not str or _LABEL.fullmatch(label) is None:
        raise InvalidRequest(
            f"{path}.server_label must be 1 to 64 letters, digits, underscores or dashes.", f"{path}.server_label"
        )
    url = tool.get("server_url")
    if type(url) is not str or not url or len(url) > 2048:
        what = "is required" if url is None else "must be a URL of at most 2048 characters"
        raise InvalidRequest(f"{path}.server_url {what}.", f"{path}.server_url")
    description = tool.get("server_description")
    if description is not None and (type(description) is not str or len(description) > MAX_DESCRIPTION_CHARS):
        raise InvalidRequest(
            f"{path}.server_description must be a string of at most {MAX_DESCRIPTION_CHARS} characters.",
            f"{path}.server_description",
        )
    for name in ("defer_loading",):
        if tool.get(name) is not None and type(tool[name]) is not bool:
            raise InvalidRequest(f"{path}.{name} must be a boolean.", f"{path}.{name}")
    callers = tool.get("allowed_callers")
    if callers is not None and (type(callers) is not list or any(c not in ("direct", "programmatic") for c in callers)):
        raise InvalidRequest(
            f"{path}.allowed_callers must be a list of direct or programmatic.", f"{path}.allowed_callers"
        )
    return McpTool(
        index=index,
        server_label=label,
        server_url=url,
        allowed=_allowed(tool.get("allowed_tools"), f"{path}.allowed_tools"),
        approval=_approval(tool.get("require_approval"), f"{path}.require_approval"),
        server_description=description,
        headers=_headers(tool, path),
    )


def _names(value: object, path: str, unique: bool = False) -> tuple[str, ...]:
    """A list of tool names; with ``unique`` (``allowed_tools``, as an MCP app's) a repeated name is refused."""
    if type(value) is not list or len(value) > MAX_LISTED_TOOLS:
        raise InvalidRequest(f"{path} must be a list of at most {MAX_LISTED_TOOLS} tool names.", path)
    for i, name in enumerate(value):
        if type(name) is not str or not 1 <= len(name) <= 128:
            raise InvalidRequest(f"{path}[{i}] must be a tool name (1 to 128 characters).", f"{path}[{i}]")
        if unique and name in value[:i]:
            raise InvalidRequest(f"{path}[{i}] repeats {name!r}: name each tool once.", f"{path}[{i}]")
    return tuple(value)


def _filter(value: object, path: str, unique: bool = False) -> ToolFilter:
    if type(value) is not dict:
        raise InvalidRequest(f'{path} must be an object such as {{"tool_names": [...]}}.', path)
    check_fields(value, _FILTER_FIELDS, path, "a tool filter")
    read_only = value.get("read_only")
    if read_only is not None and type(read_only) is not bool:
        raise InvalidRequest(f"{path}.read_only must be a boolean.", f"{path}.read_only")
    names = value.get("tool_names")
    return ToolFilter(None if names is None else _names(names, f"{path}.tool_names", unique), read_only)


def _allowed(value: object, path: str) -> ToolFilter | None:
    if value is None:
        return None
    if type(value) is list:
        return ToolFilter(_names(value, path, unique=True))
    if type(value) is dict:
        return _filter(value, path, unique=True)
    raise InvalidRequest(f'{path} must be a list of tool names or {{"tool_names": [...]}}.', path)


def _approval(value: object, path: str) -> Approval:
    if value is None or value == "always":
        return ALWAYS
    if value == "never":
        return NEVER
    if type(value) is not dict or not value:
        raise InvalidRequest(
            f'{path} must be "always", "never", {{"never": {{"tool_names": [...]}}}} or '
            '{"always": {"tool_names": [...]}}.',
            path,
        )
    check_fields(value, _APPROVAL_FIELDS, path, "require_approval")
    always = None if value.get("always") is None else _filter(value["always"], f"{path}.always")
    never = None if value.get("never") is None else _filter(value["never"], f"{path}.never")
    return Approval(always, never, otherwise=never is not None or always is None)


def _headers(tool: dict[str, Any], path: str) -> dict[str, str]:
    headers = tool.get("headers")
    out: dict[str, str] = {}
    if headers is not None:
        if type(headers) is not dict or len(headers) > MAX_HEADERS:
            raise InvalidRequest(
                f"{path}.headers must be an object of at most {MAX_HEADERS} headers.", f"{path}.headers"
            )
        for name, value in headers.items():
            if _HEADER_NAME.fullmatch(name) is None or type(value) is not str or len(value) > 8192:
                raise InvalidRequest(
                    f"{path}.headers must map header names to string values (at most 8192 characters).",
                    f"{path}.headers",
                )
            if "\r" in value or "\n" in value:
                raise InvalidRequest(f"{path}.headers values must not contain line breaks.", f"{path}.headers")
            out[name] = value
    token = tool.get("authorization")
    if token is not None:
        if type(token) is not str or not token or len(token) > 8192 or "\r" in token or "\n" in token:
            raise InvalidRequest(f"{path}.authorization must be an access token string.", f"{path}.authorization")
        out["Authorization"] = f"Bearer {token}"
    return out


def check_labels(tools: list[McpTool]) -> None:
    seen: set[str] = set()
    for tool in tools:
        if tool.server_label in seen:
            path = f"tools[{tool.index}].server_label"
            raise InvalidRequest(
                f"{path} {tool.server_label!r} is already used by another mcp tool; server labels must be unique.",
                path,
            )
        seen.add(tool.server_label)


# -- names offered to the model -------------------------------------------------------------------------------


def function_name(label: str, tool: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    plain = f"{label}__{tool}"
    if _FUNCTION_NAME.fullmatch(plain) and plain not in taken:
        return plain
    digest = hashlib.sha256(f"{label}\0{tool}".encode()).hexdigest()[:10]
    return f"{_UNSAFE.sub('_', label)[:24]}__{_UNSAFE.sub('_', tool)[:24]}_{digest}"


@dataclass(frozen=True, slots=True)
class Offered:
    """An MCP tool offered to the model: its server, its listed definition and the function name it goes by."""

    server: McpTool
    tool: dict[str, Any]  # {name, description, input_schema, annotations} as listed

    @property
    def needs_approval(self) -> bool:
        return self.server.approval.required(self.tool)


def offered_tools(
    servers: list[McpTool], listings: Mapping[str, dict[str, Any]], reserved: tuple[str, ...]
) -> dict[str, Offered]:
    """Function name -> offered MCP tool, for every server with a listing, in request order."""
    taken = set(reserved)
    offered: dict[str, Offered] = {}
    for server in servers:
        listing = listings.get(server.server_label)
        if listing is None:
            continue
        for tool in listing.get("tools") or ():
            if not server.offers(tool):
                continue
            name = function_name(server.server_label, tool["name"], taken)
            taken.add(name)
            offered[name] = Offered(server, tool)
    return offered


def function_tool(name: str, offered: Offered) -> dict[str, Any]:
    """The Responses function tool the model sees for an MCP tool."""
    description = offered.tool.get("description") or f"The tool {offered.tool['name']}"
    server = offered.server.server_description
    if server:
        description = f"{description}\n(MCP server {offered.server.server_label}: {server})"
    schema = offered.tool.get("input_schema")
    parameters = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
    return {"type": "function", "name": name, "description": description, "parameters": parameters}


# -- tool_choice {"type": "mcp"} ------------------------------------------------------------------------------


def mcp_choice(choice: object) -> Mapping[str, Any] | None:
    """The request's ``tool_choice`` when it is OpenAI's ``{"type": "mcp", "server_label", "name"?}``."""
    if isinstance(choice, dict) and choice.get("type") == "mcp":
        return choice
    return None


def check_forced(
    choice: Mapping[str, Any], server: McpTool, listing: Mapping[str, Any] | None, error: str | None
) -> None:
    """A forced MCP tool must be one the server offers: its listing (this request's, or the chain's) has it and the
    tool's ``allowed_tools`` lets it through. Unknown → 400 at ``tool_choice.name``; a server whose tools could not
    be listed cannot be forced (502, the listing's error)."""
    label, name = choice["server_label"], choice.get("name")
    if listing is None:
        raise UpstreamError(f"tool_choice names the MCP server {label!r}, whose tools could not be listed: {error}")
    offered = [tool for tool in listing.get("tools") or () if server.offers(tool)]
    if name is None and not offered:
        raise InvalidRequest(
            f"tool_choice.server_label {label!r} names an MCP server that offers no tools.", "tool_choice.server_label"
        )
    if name is not None and not any(tool["name"] == name for tool in offered):
        raise InvalidRequest(
            f"tool_choice.name {name!r} is not a tool the MCP server {label!r} offers; its tools are listed in the "
            "response's mcp_list_tools item.",
            "tool_choice.name",
        )


def check_required(
    servers: list[McpTool], listings: Mapping[str, Mapping[str, Any]], errors: Mapping[str, str]
) -> None:
    """``tool_choice: "required"`` on a request whose only tools are ``mcp`` ones (the first model turn forced): one
    of them must be offered, else there is nothing to require. As for a forced ``{"type": "mcp"}`` server: when a
    server whose tools could not be listed might have offered one, the answer is its listing's error (502); when
    every server was listed and offers none, a 400 at ``tool_choice`` says why for each."""
    if any(server.offers(tool) for server in servers for tool in _listed(listings.get(server.server_label))):
        return
    failed = [server for server in servers if server.server_label not in listings]
    if failed:
        causes = "; ".join(f"{s.server_label!r}: {errors.get(s.server_label, 'no listing')}" for s in failed)
        raise UpstreamError(
            "tool_choice 'required' needs a tool to call, and the request's only tools are on MCP servers whose tools "
            f"could not be listed ({causes})."
        )
    reasons = []
    for server in servers:
        listed = _listed(listings.get(server.server_label))
        label = repr(server.server_label)
        if listed:
            tools = f"{len(listed)} tool{'' if len(listed) == 1 else 's'}"
            reasons.append(f"{label} lists {tools}, none allowed by tools[{server.index}].allowed_tools")
        else:
            reasons.append(f"{label} lists no tools")
    raise InvalidRequest(
        "tool_choice 'required' needs a tool to call, but there is no tool to offer the model: the request declares "
        f"no function tools and its MCP servers offer none ({'; '.join(reasons)}).",
        "tool_choice",
    )


def _listed(listing: Mapping[str, Any] | None) -> list[Any]:
    tools = listing.get("tools") if listing is not None else None
    return tools if isinstance(tools, list) else []


def forced_choice(choice: Mapping[str, Any], offered: Mapping[str, Offered]) -> tuple[str | dict[str, Any], list[str]]:
    """``tool_choice: {"type": "mcp"}`` as the first model turn sees it, the MCP tools being function tools: the
    function names it allows, and the choice that forces one of them: that function when it is one (a named tool,
    or a server offering a single tool), else ``"required"`` with only the server's functions offered on that
    turn. Later turns choose freely (``auto``, ``mcp_turns.turn_choice``), as OpenAI does."""
    label, name = choice["server_label"], choice.get("name")
    names = [
        function
        for function, tool in offered.items()
        if tool.server.server_label == label and (name is None or tool.tool["name"] == name)
    ]
    if len(names) == 1:
        return {"type": "function", "name": names[0]}, names
    return "required", names
