"""The management use cases (SPEC §4–§6, §11): one module per concept, and ``Management``, the typed group the
composition root (``app.py``) builds once and handlers reach as ``services(request).management``."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.services.management.accounts import Accounts
from tollway.services.management.budgets import Budgets
from tollway.services.management.card_topups import CardTopups
from tollway.services.management.catalog_admin import CatalogAdmin
from tollway.services.management.credentials import LlmConfigs, PlatformKeys
from tollway.services.management.end_users import EndUsers
from tollway.services.management.idempotency import Idempotency
from tollway.services.management.mcp_apps import McpApps
from tollway.services.management.platforms import Platforms
from tollway.services.management.price_import import PriceImport
from tollway.services.management.rate_overrides import RateLimitOverrides
from tollway.services.management.webhooks import Webhooks


@dataclass(frozen=True, slots=True)
class Management:
    catalog: CatalogAdmin
    platforms: Platforms
    platform_keys: PlatformKeys
    llm_configs: LlmConfigs
    accounts: Accounts
    end_users: EndUsers
    budgets: Budgets
    idempotency: Idempotency  # runs budget and wallet writes under an Idempotency-Key (§9.7)
    webhooks: Webhooks
    rate_limits: RateLimitOverrides
    mcp_apps: McpApps
    prices: PriceImport  # the LiteLLM price catalogue import (§19)
    card_topups: CardTopups  # Stripe Checkout (§17.2); its routes answer 404 when Stripe is not configured
