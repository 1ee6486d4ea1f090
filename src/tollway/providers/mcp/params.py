"""``Mcp-Param-*`` headers of a ``tools/call`` to an app of MCP 2026-07-28 ("Custom Headers from Tool Parameters"):
the arguments a tool's ``inputSchema`` marks with ``x-mcp-header`` (string, integer or boolean properties reached by
``properties`` keys only), each as ``Mcp-Param-{name}``, its value as text (``true``/``false`` for booleans) and
Base64-wrapped (``=?base64?…?=``) when it is not plain printable ASCII without edge spaces. An argument that is
absent or null sends no header. The SDK's own functions (``mcp.shared.inbound``) decide and encode, so the gateway
mirrors exactly what the SDK's servers check; an app of an older revision gets none of this. A caller's
``Mcp-Param-*`` header the schema does not declare is not ours to judge: it travels on, as the specification asks of
intermediaries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp.shared.inbound import (
    MCP_PARAM_HEADER_PREFIX,
    find_invalid_x_mcp_header,
    mcp_param_headers,
    x_mcp_header_map,
)

PREFIX = MCP_PARAM_HEADER_PREFIX.lower()


@dataclass(frozen=True, slots=True)
class Mirrored:
    """The headers a call must carry, and every header name (lowercase) the tool's schema declares."""

    headers: dict[str, str]
    declared: frozenset[str]


def mirrored(input_schema: Mapping[str, Any] | None, arguments: Mapping[str, Any] | None) -> Mirrored | None:
    """The ``Mcp-Param-*`` headers of the call, or None when the schema is unknown (or its annotations are invalid,
    so the tool mirrors nothing): then the headers the server was given travel as they are."""
    if input_schema is None or find_invalid_x_mcp_header(input_schema) is not None:
        return None
    declared = x_mcp_header_map(input_schema)
    names = frozenset(f"{PREFIX}{token.lower()}" for token in declared.values())
    return Mirrored(mcp_param_headers(declared, arguments or {}), names)


def with_mirrored(headers: Mapping[str, str], params: Mirrored | None) -> dict[str, str]:
    """``headers`` with the mirrored ones in place of any declared header they carried (a caller's, relayed by the
    proxy, of any case): one copy of each, as the app refuses a duplicated one."""
    if params is None:
        return dict(headers)
    return {**{k: v for k, v in headers.items() if k.lower() not in params.declared}, **params.headers}
