"""The management use cases (SPEC §4–§6) as one typed group, built once by the composition root (``app.py``) and
reached by handlers as ``services(request).management``."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.services.accounts import Accounts
from tollway.services.budgets import Budgets
from tollway.services.catalog_admin import CatalogAdmin
from tollway.services.credentials import LlmConfigs, PlatformKeys
from tollway.services.end_users import EndUsers
from tollway.services.idempotency import Idempotency
from tollway.services.platforms import Platforms
from tollway.services.rate_overrides import RateLimitOverrides
from tollway.services.webhooks import Webhooks


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
