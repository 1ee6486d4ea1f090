"""The tool schemas MCP calls are made with (SPEC §16.3; MCP 2026-07-28, "Custom Headers from Tool Parameters"): the
``inputSchema`` of every tool an app's server listed, remembered per server URL from the listings Tollway reads (the
proxy's relayed ``tools/list`` and the Responses loop's listings).

A schema decides two things: which ``Mcp-Param-*`` headers the gateway's own calls to a 2026-07-28 app mirror from
their arguments (the MCP client adds them, ``providers/mcp``), and which headers the MCP proxy checks a caller's
``tools/call`` against before billing it (``http/mcp``). A schema is kept ``SCHEMA_TTL_S``; a tool the cache does not
know is called without headers, and an app that refuses that (``HeaderMismatch``) gets its tools listed again and
the call sent once more, as the specification asks of clients. Per process, bounded: past ``_MAX_SERVERS`` servers
everything is forgotten at once (the next listing or mismatch learns it again).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

SCHEMA_TTL_S = 600.0  # how long a listed tool's schema is used for headers and checks before a listing renews it
_MAX_SERVERS = 10_000


class ToolSchemas:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._now = clock
        self._servers: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}  # URL -> (expiry, tool -> schema)

    def learn(self, url: str, listing: Mapping[str, Any]) -> None:
        """Remembers the schemas of a page of ``tools/list`` (the app's JSON result, before any filtering)."""
        tools = listing.get("tools")
        if not isinstance(tools, list):
            return
        now = self._now()
        known = self._servers.get(url)
        schemas = known[1] if known is not None and known[0] > now else {}
        for tool in tools:
            if isinstance(tool, Mapping) and isinstance(name := tool.get("name"), str):
                schema = tool.get("inputSchema")
                schemas[name] = dict(schema) if isinstance(schema, Mapping) else {}
        if url not in self._servers and len(self._servers) >= _MAX_SERVERS:
            self._servers.clear()
        self._servers[url] = (now + SCHEMA_TTL_S, schemas)

    def get(self, url: str, tool: str) -> dict[str, Any] | None:
        """The tool's listed ``inputSchema``, or None when no fresh listing of the server named it."""
        known = self._servers.get(url)
        if known is None or known[0] <= self._now():
            return None
        return known[1].get(tool)

    def forget(self, url: str) -> None:
        self._servers.pop(url, None)
