"""The tool schemas MCP calls are made with (SPEC §16.3; MCP 2026-07-28, "Custom Headers from Tool Parameters"): the
``inputSchema`` of every tool an app's server listed, remembered per listing scope (``Scope``: the platform, the app,
whose credential listed it, the server URL) from the listings Tollway reads (the proxy's relayed ``tools/list`` and
the Responses loop's listings).

A schema decides two things: which ``Mcp-Param-*`` headers the gateway's own calls to a 2026-07-28 app mirror from
their arguments (the MCP client adds them, ``providers/mcp``), and which headers the MCP proxy checks a caller's
``tools/call`` against before billing it (``http/mcp``). A server may list different tools to different credentials,
and two platforms may register the same server URL, so a listing serves only calls of its own scope: one platform's
listing never decides another's check, nor one end user's OAuth listing another's. A schema is kept
``SCHEMA_TTL_S``; a tool the cache does not know is called without headers, and an app that refuses that
(``HeaderMismatch``) gets its tools listed again and the call sent once more, as the specification asks of clients.
Per process, bounded: past ``_MAX_SCOPES`` scopes everything is forgotten at once (the next listing or mismatch
learns it again).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from tollway.domain.mcp_calls import McpApp
from tollway.domain.tenancy import Principal

SCHEMA_TTL_S = 600.0  # how long a listed tool's schema is used for headers and checks before a listing renews it
_MAX_SCOPES = 10_000

Scope: TypeAlias = tuple[str, str, str, str]
"""Whose listing a schema comes from: (platform id, app id, the end user whose credential listed it or "", URL)."""


def listing_scope(principal: Principal, app: McpApp) -> Scope:
    """The scope of the caller's listings of ``app``: the narrowest identity known wherever a listing is learnt or
    read (the proxy checks a call before it reads the caller's connection, so not the connection's row). An OAuth
    app lists with the end user's own token (one connection per end user and app, §16.2) and an external server
    with the request's own headers: theirs are per end user. ``none`` and ``header`` apps list with the app's one
    credential: theirs is the app's. The platform is part of every scope: an external server's stand-in app id
    is only unique within a request. The server URL too: an app whose ``server_url`` changes starts afresh."""
    per_caller = app.oauth or app.external
    return (principal.platform_id or "", app.id, (principal.end_user_id or "") if per_caller else "", app.server_url)


class ToolSchemas:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._now = clock
        self._scopes: dict[Scope, tuple[float, dict[str, dict[str, Any]]]] = {}  # scope -> (expiry, tool -> schema)

    def learn(self, scope: Scope, listing: Mapping[str, Any]) -> None:
        """Remembers the schemas of a page of ``tools/list`` (the app's JSON result, before any filtering)."""
        tools = listing.get("tools")
        if not isinstance(tools, list):
            return
        now = self._now()
        known = self._scopes.get(scope)
        schemas = known[1] if known is not None and known[0] > now else {}
        for tool in tools:
            if isinstance(tool, Mapping) and isinstance(name := tool.get("name"), str):
                schema = tool.get("inputSchema")
                schemas[name] = dict(schema) if isinstance(schema, Mapping) else {}
        if scope not in self._scopes and len(self._scopes) >= _MAX_SCOPES:
            self._scopes.clear()
        self._scopes[scope] = (now + SCHEMA_TTL_S, schemas)

    def get(self, scope: Scope, tool: str) -> dict[str, Any] | None:
        """The tool's listed ``inputSchema``, or None when no fresh listing of this scope named it."""
        known = self._scopes.get(scope)
        if known is None or known[0] <= self._now():
            return None
        return known[1].get(tool)

    def forget(self, scope: Scope) -> None:
        self._scopes.pop(scope, None)
