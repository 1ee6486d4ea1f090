"""End users, their budgets and budget ledgers (SPEC §5.4, §5.5, §9.5), and rate-limit overrides (§5.6, §6)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, Field

from tollway_sdk._models import TollwayModel
from tollway_sdk.types.keys import CreatedAPIKey


class Budget(TollwayModel):
    id: str
    platform_id: str
    end_user_id: str
    max_usd: Decimal
    used_usd: Decimal
    remaining_usd: Decimal
    held_usd: Decimal
    available_usd: Decimal
    period: str  # one_time, daily or monthly
    period_start: AwareDatetime
    next_reset_at: AwareDatetime | None = None
    auto_replenish: bool
    replenish_amount: Decimal | None = None
    low_balance_threshold: Decimal | None = None
    is_active: bool
    is_suspended: bool
    created_at: AwareDatetime
    updated_at: AwareDatetime


class BudgetTransaction(TollwayModel):
    id: str
    budget_id: str
    platform_id: str
    end_user_id: str
    type: str  # opening_balance, topup, debit, inference, reset, adjustment, suspend, unsuspend
    amount_usd: Decimal
    max_usd_after: Decimal
    used_usd_after: Decimal
    remaining_usd_after: Decimal
    reason: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None
    created_at: AwareDatetime


class BudgetChange(TollwayModel):
    """The answer to a budget top-up or debit: the budget after it and the ledger row it wrote."""

    budget: Budget
    transaction: BudgetTransaction


class EndUser(TollwayModel):
    id: str
    platform_id: str
    external_id: str
    display_name: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    is_active: bool
    created_at: AwareDatetime
    updated_at: AwareDatetime


class CreatedEndUser(EndUser):
    """The answer to creating an end user (or repeating its ``external_id``): a fresh key and its budget.

    ``created`` is true when this call created the end user (HTTP 201), false when it already existed (200)."""

    api_key: CreatedAPIKey
    budget: Budget | None = None
    created: bool = True


class RateLimitOverride(TollwayModel):
    end_user_id: str
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    rpd_limit: int | None = None
    updated_at: AwareDatetime


class EffectiveRateLimits(TollwayModel):
    """``GET /v1/me/rate-limits``: ``resolution`` is ``explicit``, ``default`` or ``none``."""

    rpm_limit: int | None = None
    tpm_limit: int | None = None
    rpd_limit: int | None = None
    resolution: str
