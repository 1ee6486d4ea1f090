"""A platform's settings (SPEC §5.1) as one value, and its stored JSON form in ``platforms.settings``.

Stored in internal units so that readers never parse USD: ``markup_bps`` (basis points, markup_percentage × 100),
``*_nanos`` for money. The stored form is what the inference path reads; it never contains floats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

MCP_FREE_CALLS_DEFAULT: Final = 1000


class BudgetPeriod(StrEnum):
    ONE_TIME = "one_time"
    DAILY = "daily"
    MONTHLY = "monthly"


@dataclass(frozen=True, slots=True)
class DefaultBudget:
    """What every end user created afterwards gets as its budget (no auto-replenish)."""

    max_nanos: int
    period: BudgetPeriod


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Default end-user limits; None means unlimited in that dimension."""

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None

    @property
    def any_set(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.rpd is not None


@dataclass(frozen=True, slots=True)
class PlatformSettings:
    default_budget: DefaultBudget | None = None
    markup_bps: int = 0
    rate_limits: RateLimits = field(default_factory=RateLimits)
    wallet_low_balance_threshold_nanos: int | None = None
    # SPEC §16.1: free MCP calls per UTC month, whether `mcp` tools may name foreign servers, and the origins allowed
    # as `redirect_uri` after an end user's OAuth connection (each `scheme://host[:port]`, normalised).
    mcp_free_calls_per_month: int = MCP_FREE_CALLS_DEFAULT
    mcp_external_servers: bool = False
    mcp_redirect_origins: tuple[str, ...] = ()

    def to_stored(self) -> dict[str, Any]:
        budget = self.default_budget
        return {
            "default_budget": None
            if budget is None
            else {"max_nanos": budget.max_nanos, "period": budget.period.value},
            "markup_bps": self.markup_bps,
            "rate_limits": {"rpm": self.rate_limits.rpm, "tpm": self.rate_limits.tpm, "rpd": self.rate_limits.rpd},
            "wallet_low_balance_threshold_nanos": self.wallet_low_balance_threshold_nanos,
            "mcp_free_calls_per_month": self.mcp_free_calls_per_month,
            "mcp_external_servers": self.mcp_external_servers,
            "mcp_redirect_origins": list(self.mcp_redirect_origins),
        }

    @classmethod
    def from_stored(cls, data: Mapping[str, Any] | None) -> PlatformSettings:
        """Tolerant of absent keys (rows written before a setting existed get its default)."""
        if not data:
            return cls()
        raw_budget = data.get("default_budget")
        budget = (
            DefaultBudget(int(raw_budget["max_nanos"]), BudgetPeriod(str(raw_budget["period"])))
            if isinstance(raw_budget, Mapping)
            else None
        )
        raw_limits = data.get("rate_limits") or {}
        limits = RateLimits(
            _opt_int(raw_limits.get("rpm")), _opt_int(raw_limits.get("tpm")), _opt_int(raw_limits.get("rpd"))
        )
        return cls(
            default_budget=budget,
            markup_bps=int(data.get("markup_bps") or 0),
            rate_limits=limits,
            wallet_low_balance_threshold_nanos=_opt_int(data.get("wallet_low_balance_threshold_nanos")),
            mcp_free_calls_per_month=_default(_opt_int(data.get("mcp_free_calls_per_month")), MCP_FREE_CALLS_DEFAULT),
            mcp_external_servers=data.get("mcp_external_servers") is True,
            mcp_redirect_origins=tuple(str(o) for o in data.get("mcp_redirect_origins") or ()),
        )


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _default(value: int | None, default: int) -> int:
    return default if value is None else value
