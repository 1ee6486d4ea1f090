"""``MCPApps`` and ``AsyncMCPApps``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.platform.mcp_apps import AsyncMCPApps
from tollway_sdk._sync.resources.platform.mcp_apps import MCPApps

__all__ = ["AsyncMCPApps", "MCPApps"]
