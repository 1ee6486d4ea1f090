"""Operator objects (SPEC §4, §9.6, §19): providers, priced model rows, platforms, reconciliation, price imports."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime

from tollway_sdk._models import TollwayModel
from tollway_sdk.types.keys import CreatedAPIKey
from tollway_sdk.types.wallet import Wallet


class Provider(TollwayModel):
    id: str
    slug: str
    name: str
    kind: str  # openai, openai_compatible, anthropic, gemini, asi1
    base_url: str
    is_active: bool
    created_at: AwareDatetime
    updated_at: AwareDatetime


class Model(TollwayModel):
    """A model row: one public slug served by one provider, with its prices in USD per million tokens."""

    id: str
    slug: str
    provider_id: str
    upstream_model: str
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal
    cached_input_price_per_mtok: Decimal | None = None
    cache_write_price_per_mtok: Decimal | None = None
    price_per_image: Decimal | None = None
    price_per_request: Decimal | None = None
    priority: int
    min_output_tokens: int | None = None
    max_output_tokens: int
    context_window: int | None = None
    is_active: bool
    created_at: AwareDatetime
    updated_at: AwareDatetime


class DefaultBudget(TollwayModel):
    max_usd: Decimal
    period: str


class DefaultRateLimits(TollwayModel):
    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None


class PlatformSettings(TollwayModel):
    default_budget: DefaultBudget | None = None
    markup_percentage: Decimal = Decimal(0)
    rate_limits: DefaultRateLimits = DefaultRateLimits()
    wallet_low_balance_threshold: Decimal | None = None
    mcp_free_calls_per_month: int | None = None
    mcp_external_servers: bool | None = None
    mcp_redirect_origins: list[str] | None = None


class Platform(TollwayModel):
    id: str
    name: str
    slug: str
    settings: PlatformSettings
    created_at: AwareDatetime
    updated_at: AwareDatetime


class CreatedPlatform(TollwayModel):
    """The answer to creating a platform: its first platform key's ``raw_key`` is shown here only."""

    platform: Platform
    wallet: Wallet
    api_key: CreatedAPIKey


class PlatformWithWallet(TollwayModel):
    platform: Platform
    wallet: Wallet


class Difference(TollwayModel):
    kind: str
    id: str
    expected_usd: Decimal
    actual_usd: Decimal


class Reconciliation(TollwayModel):
    ok: bool
    checked_at: AwareDatetime
    wallets: int
    budgets: int
    differences: list[Difference]


class PriceImport(TollwayModel):
    """What ``POST /v1/admin/models/import`` changed (or would change, with ``dry_run``)."""

    object: str = "price_import"
    dry_run: bool
    applied: bool
    provider: str | None = None
    updated: list[dict[str, Any]]  # {id, slug, provider, entry, changes: {field: {old, new}}}
    created: list[dict[str, Any]]  # {slug, provider, entry, values}
    unchanged: int  # rows matched whose values already agree
    unknown: list[dict[str, Any]]  # {entry, reason}
    malformed: list[dict[str, Any]]  # {entry, field, reason}
    ignored: int  # entries for no selected provider
