"""MCP apps, end users' connections and the self-service MCP configuration (SPEC §16.1, §16.2). Secrets (header
values, client secrets, tokens) are never returned: an app says ``has_secret``."""

from __future__ import annotations

from decimal import Decimal

from pydantic import AwareDatetime, Field

from tollway_sdk._models import TollwayModel


class MCPAuth(TollwayModel):
    """``{"type": "none"}``, ``{"type": "header", "name"}`` or ``{"type": "oauth2", "authorize_url", ...}``,
    without the secret part; the other fields are attributes too (``auth.client_id``)."""

    type: str


class MCPApp(TollwayModel):
    id: str
    platform_id: str
    slug: str
    name: str
    server_url: str
    auth: MCPAuth
    has_secret: bool
    price_per_call_usd: Decimal
    allowed_tools: list[str] | None = None
    is_active: bool
    created_at: AwareDatetime
    updated_at: AwareDatetime


class MCPConnection(TollwayModel):
    app_slug: str
    end_user_id: str
    status: str  # connected or expired
    connected_at: AwareDatetime | None = None
    scopes: list[str] = Field(default_factory=list)


class MCPConfigApp(TollwayModel):
    slug: str
    name: str
    server_url: str  # the MCP proxy URL to give an MCP client, with the end user's key
    auth: str
    connected: bool
    connected_at: AwareDatetime | None = None
    allowed_tools: list[str] | None = None


class MCPConfig(TollwayModel):
    apps: list[MCPConfigApp]


class MCPConnectStart(TollwayModel):
    """Where to send the end user to approve the connection, valid until ``expires_at``."""

    authorize_url: str
    expires_at: AwareDatetime
