"""``/v1/platforms/{pid}/mcp`` (SPEC §16.1): the platform's MCP apps (tool servers its end users' agents may call,
billed per call) and its end users' connections to them. Secrets are write-only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tollway_sdk._base_client import Call
from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, Scoped, no_content, parser, seg
from tollway_sdk._types import NOT_GIVEN, USD, NotGiven, given, query, usd_fields
from tollway_sdk.types.mcp import MCPApp, MCPConnection
from tollway_sdk.types.params import MCPAuthParam


class _Calls(Scoped):
    def _call(self, method: str, app_id: str | None = None, fields: dict[str, Any] | None = None) -> Call[MCPApp]:
        path = self._platform("mcp", "apps") if app_id is None else self._platform("mcp", "apps", seg(app_id))
        amounts = None if fields is None else usd_fields(fields, "price_per_call_usd")
        return Call(method, path, parser(MCPApp), body=amounts)

    def _delete(self, app_id: str) -> Call[None]:
        return Call("DELETE", self._platform("mcp", "apps", seg(app_id)), no_content)

    def _connections(self, end_user_id: str | NotGiven) -> ListCall[MCPConnection]:
        path = self._platform("mcp", "connections")
        return ListCall(path, parser(MCPConnection), query(end_user_id=end_user_id))


class AsyncMCPApps(_Calls, AsyncAPIResource):
    async def create(
        self,
        *,
        slug: str,
        name: str,
        server_url: str,
        auth: MCPAuthParam,
        price_per_call_usd: USD | NotGiven = NOT_GIVEN,
        allowed_tools: Sequence[str] | NotGiven | None = NOT_GIVEN,
        is_active: bool | NotGiven = NOT_GIVEN,
    ) -> MCPApp:
        """Register an MCP server (Streamable HTTP) as an app; ``price_per_call_usd`` defaults to $0.001."""
        return await self._request(self._call("POST", fields=given(locals())))

    def list(self, *, limit: int | NotGiven = NOT_GIVEN, page: int = 1) -> AsyncPaginator[MCPApp]:
        return self._list(ListCall(self._platform("mcp", "apps"), parser(MCPApp)), limit, page)

    async def retrieve(self, app_id: str) -> MCPApp:
        return await self._request(self._call("GET", app_id))

    async def update(
        self,
        app_id: str,
        *,
        slug: str | NotGiven = NOT_GIVEN,
        name: str | NotGiven = NOT_GIVEN,
        server_url: str | NotGiven = NOT_GIVEN,
        auth: MCPAuthParam | NotGiven = NOT_GIVEN,
        price_per_call_usd: USD | NotGiven = NOT_GIVEN,
        allowed_tools: Sequence[str] | NotGiven | None = NOT_GIVEN,
        is_active: bool | NotGiven = NOT_GIVEN,
    ) -> MCPApp:
        return await self._request(self._call("PATCH", app_id, given(locals(), "app_id")))

    async def delete(self, app_id: str) -> None:
        await self._request(self._delete(app_id))

    def list_connections(
        self, *, end_user_id: str | NotGiven = NOT_GIVEN, limit: int | NotGiven = NOT_GIVEN, page: int = 1
    ) -> AsyncPaginator[MCPConnection]:
        """End users' connections to the apps (never their tokens)."""
        return self._list(self._connections(end_user_id), limit, page)
