"""Shapes of the nested request arguments (``TypedDict``): platform settings and MCP app authentication."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, NotRequired, TypeAlias, TypedDict

from tollway_sdk._types import USD

BudgetPeriod: TypeAlias = Literal["one_time", "daily", "monthly"]
KeyScope: TypeAlias = Literal["inference", "manage"]


class DefaultBudgetParam(TypedDict):
    max_usd: USD
    period: BudgetPeriod


class RateLimitsParam(TypedDict, total=False):
    rpm: int | None
    tpm: int | None
    rpd: int | None


class PlatformSettingsParam(TypedDict, total=False):
    """Each key present replaces its stored value whole; absent keys are kept (SPEC §5.1, §16.1)."""

    default_budget: DefaultBudgetParam | None
    markup_percentage: Decimal | int
    rate_limits: RateLimitsParam
    wallet_low_balance_threshold: USD | None
    mcp_free_calls_per_month: int
    mcp_external_servers: bool
    mcp_redirect_origins: list[str]


class NoAuthParam(TypedDict):
    type: Literal["none"]


class HeaderAuthParam(TypedDict):
    type: Literal["header"]
    name: str
    value: NotRequired[str]  # required on creation; left out of a PATCH, the stored secret is kept


class OAuth2AuthParam(TypedDict):
    type: Literal["oauth2"]
    authorize_url: str
    token_url: str
    client_id: str
    client_secret: NotRequired[str]  # required on creation; left out of a PATCH, the stored secret is kept
    scopes: list[str]
    revocation_url: NotRequired[str]


MCPAuthParam: TypeAlias = NoAuthParam | HeaderAuthParam | OAuth2AuthParam
