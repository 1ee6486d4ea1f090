"""What the MCP use cases need (SPEC §16.1, §16.2): the apps of a platform, end users' connections and pending OAuth
states in storage, and an OAuth 2.1 client for the apps' authorization servers. Each repository method is one short
transaction of its own."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from tollway.domain.mcp import OAuthApp, TokenSet
from tollway.domain.mcp_calls import McpServer, ToolResult
from tollway.domain.records import Record

Page = tuple[list[Record], int]


class McpAppRepository(Protocol):
    async def create(self, values: Mapping[str, Any]) -> Record:
        """``Duplicate`` when the platform has an app with this slug."""
        ...

    async def list_apps(self, platform_id: str, offset: int, limit: int) -> Page: ...

    async def get(self, platform_id: str, app_id: str) -> Record | None: ...

    async def by_slug(self, platform_id: str, slug: str) -> Record | None: ...

    async def active_apps(self, platform_id: str) -> list[Record]:
        """Every active app of the platform, by slug."""
        ...

    async def update(self, platform_id: str, app_id: str, values: Mapping[str, Any], now: datetime) -> Record | None:
        """``Duplicate`` when the new slug is taken."""
        ...

    async def delete(self, platform_id: str, app_id: str) -> bool:
        """Deletes the app with its connections (tokens) and pending states."""
        ...

    async def connections(self, platform_id: str, end_user_id: str | None, offset: int, limit: int) -> Page:
        """End users' connections of the platform's apps, each row with the app's ``app_slug``; never tokens."""
        ...


class McpConnectionRepository(Protocol):
    async def save_state(self, values: Mapping[str, Any]) -> None: ...

    async def take_state(self, digest: str) -> Record | None:
        """Deletes and returns the pending state with this digest (single use), None when there is none."""
        ...

    async def store(self, values: Mapping[str, Any]) -> None:
        """Stores an end user's connection to an app, replacing the one it had."""
        ...

    async def get(self, platform_id: str, app_id: str, end_user_id: str) -> Record | None: ...

    async def of_end_user(self, platform_id: str, end_user_id: str) -> list[Record]: ...

    async def claim_refresh(self, connection_id: str, version: int, now: datetime, lease_until: datetime) -> bool:
        """Takes the refresh lease of a connected row still at ``version`` whose lease is free or lapsed; exactly
        one caller wins, across instances. False: someone else refreshes (or already did)."""
        ...

    async def finish_refresh(self, connection_id: str, version: int, values: Mapping[str, Any], now: datetime) -> None:
        """Stores the new tokens of the row still at ``version``, bumps the version and frees the lease."""
        ...

    async def expire(self, connection_id: str, version: int, now: datetime) -> None:
        """Marks the connection ``expired`` (its grant was refused), bumps the version and frees the lease."""
        ...

    async def release_refresh(self, connection_id: str, lease_until: datetime) -> None:
        """Frees the lease without a change (the server could not be reached); another caller may try."""
        ...

    async def delete(self, platform_id: str, app_id: str, end_user_id: str) -> Record | None:
        """Deletes the connection and returns the row it was, None when there was none."""
        ...


class OAuthClient(Protocol):
    """OAuth 2.1 authorization code with PKCE S256 against an app's authorization server. Raises ``OAuthRefused``
    when the server answers with an OAuth error and ``OAuthUnreachable`` when it cannot be used at all."""

    def authorize_url(self, app: OAuthApp, redirect_uri: str, state: str, code_verifier: str) -> str: ...

    async def exchange(self, app: OAuthApp, code: str, redirect_uri: str, code_verifier: str) -> TokenSet: ...

    async def refresh(self, app: OAuthApp, refresh_token: str) -> TokenSet: ...

    async def revoke(self, app: OAuthApp, token: str, token_type_hint: str) -> None: ...


class McpFreeCalls(Protocol):
    """The platform's free MCP calls of one UTC month (SPEC §16.1), counted exactly across instances."""

    async def take(self, platform_id: str, month: str, limit: int) -> bool:
        """Takes one free slot of ``month`` ("YYYY-MM") while fewer than ``limit`` are taken; False: none left."""
        ...

    async def give_back(self, platform_id: str, month: str) -> None:
        """Returns a slot taken by a call that never reached the app."""
        ...


class McpServers(Protocol):
    """An MCP client to apps' servers (SPEC §16.3); every failure raises ``McpCallFailed`` saying whether the app
    answered."""

    async def list_tools(self, server: McpServer, cursor: str | None) -> dict[str, Any]:
        """The app's ``tools/list`` result (JSON), within the 15 s of connecting and listing."""
        ...

    async def call_tool(
        self,
        server: McpServer,
        name: str,
        arguments: dict[str, Any] | None,
        input_schema: Mapping[str, Any] | None = None,
    ) -> ToolResult:
        """One ``tools/call`` within ``TOLLWAY_MCP_CALL_TIMEOUT_S``, its result within the size limit.
        ``input_schema``: the tool's listed schema, if known; to an app of MCP 2026-07-28 the call mirrors its
        ``x-mcp-header`` arguments into ``Mcp-Param-*`` headers (replacing any the server's headers carry)."""
        ...

    async def relay(self, server: McpServer, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        """Any other relayed request (resources, prompts, completion): the app's result (JSON)."""
        ...
