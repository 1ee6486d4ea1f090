"""``/v1/me/mcp*`` (SPEC §16.2): the end user's MCP configuration, and connecting or disconnecting an OAuth app."""

from __future__ import annotations

from tollway_sdk._base_client import Call
from tollway_sdk._resource import AsyncAPIResource, no_content, parser, seg
from tollway_sdk._types import NOT_GIVEN, NotGiven, body
from tollway_sdk.types.mcp import MCPConfig, MCPConnectStart

_CONFIG = Call("GET", "/v1/me/mcp-config", parser(MCPConfig))


def _connect(slug: str, redirect_uri: str | NotGiven) -> Call[MCPConnectStart]:
    path = f"/v1/me/mcp/apps/{seg(slug)}/connect"
    return Call("POST", path, parser(MCPConnectStart), body=body(redirect_uri=redirect_uri))


def _disconnect(slug: str) -> Call[None]:
    return Call("DELETE", f"/v1/me/mcp/apps/{seg(slug)}/connection", no_content)


class AsyncMyMCP(AsyncAPIResource):
    async def config(self) -> MCPConfig:
        """The platform's active apps, each with the MCP server URL to give an MCP client and whether the caller
        is connected."""
        return await self._request(_CONFIG)

    async def connect(self, slug: str, *, redirect_uri: str | NotGiven = NOT_GIVEN) -> MCPConnectStart:
        """Start connecting an OAuth app: send the user to ``authorize_url``; after approval Tollway redirects to
        ``redirect_uri`` (an origin the platform allows) with ``?mcp_app=<slug>&status=connected``."""
        return await self._request(_connect(slug, redirect_uri))

    async def disconnect(self, slug: str) -> None:
        """Delete the connection's tokens (and revoke them at the app when it can)."""
        await self._request(_disconnect(slug))
