"""Sizing holds and clamping the output limit (SPEC §9.3), and the commands the money writer executes.

Pure: given the available amounts and each candidate's terms, decide the wallet and budget holds, the clamped
output limit when only part of the worst case is affordable, or which party refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from tollway.domain.pricing import (
    Prices,
    Usage,
    charge_nanos,
    cost_nanos,
    image_charge_nanos,
    image_cost_nanos,
    worst_case_prices,
)
from tollway.domain.usage import UsageRecord


@dataclass(frozen=True, slots=True)
class CandidateTerms:
    """What a hold needs to know about one candidate row."""

    model_id: str
    prices: Prices
    output_limit: int  # effective output limit per choice (§8)
    min_output: int
    prompt_tokens: int  # T_p, capped at the row's context window
    # Set for image calls (SPEC §9.3): the hold is then n × this price (charge with markup), whatever the output
    # limit, so an image hold never clamps; ``image_terms`` builds such terms.
    image_price_nanos: int | None = None

    def worst(self, n: int, limit: int, markup_bps: int) -> tuple[int, int]:
        if self.image_price_nanos is not None:
            cost = image_cost_nanos(n, self.image_price_nanos)
            return cost, image_charge_nanos(cost, markup_bps)
        usage = Usage(self.prompt_tokens, n * min(limit, self.output_limit))
        prices = worst_case_prices(self.prices)
        return cost_nanos(usage, prices), charge_nanos(usage, prices, markup_bps)


def image_terms(model_id: str, prices: Prices, price_per_image_nanos: int) -> CandidateTerms:
    """A candidate of an image call: no tokens, one fixed output limit, so ``quote_hold`` never clamps it."""
    return CandidateTerms(model_id, prices, 1, 1, 0, price_per_image_nanos)


class Refusal(StrEnum):
    SUSPENDED = "budget_suspended"
    BUDGET = "budget_exhausted"
    WALLET = "wallet_insufficient"
    NO_WALLET = "no_wallet"


@dataclass(frozen=True, slots=True)
class HoldQuote:
    wallet_nanos: int
    budget_nanos: int
    clamped_limit: int | None  # set when the output limit had to be lowered


def _amounts(terms: tuple[CandidateTerms, ...], n: int, limit: int, markup_bps: int) -> tuple[int, int]:
    worst = [t.worst(n, limit, markup_bps) for t in terms]
    return max(w for w, _ in worst), max(b for _, b in worst)


def quote_hold(
    terms: tuple[CandidateTerms, ...],
    n: int,
    markup_bps: int,
    wallet_available: int,
    budget_available: int | None,
) -> HoldQuote | Refusal:
    """The largest affordable hold: the full worst case, else the largest clamped limit L ≥ every candidate's
    minimum; ``budget_available`` None means no budget hold. The budget's refusal wins when both refuse."""
    full_limit = max(t.output_limit for t in terms)

    def fits(limit: int) -> tuple[bool, bool, int, int]:
        wallet, budget = _amounts(terms, n, limit, markup_bps)
        budget_ok = budget_available is None or budget <= budget_available
        return wallet <= wallet_available, budget_ok, wallet, budget

    wallet_ok, budget_ok, wallet, budget = fits(full_limit)
    if wallet_ok and budget_ok:
        return HoldQuote(wallet, budget if budget_available is not None else 0, None)
    low = max(t.min_output for t in terms)
    wallet_ok, budget_ok, _, _ = fits(low)
    if not (wallet_ok and budget_ok):
        return Refusal.BUDGET if not budget_ok else Refusal.WALLET
    high = full_limit - 1
    while low < high:  # largest L in [low, high] that fits; amounts grow with L
        middle = (low + high + 1) // 2
        w_ok, b_ok, _, _ = fits(middle)
        if w_ok and b_ok:
            low = middle
        else:
            high = middle - 1
    _, _, wallet, budget = fits(low)
    return HoldQuote(wallet, budget if budget_available is not None else 0, low)


@dataclass(frozen=True, slots=True)
class HoldRequest:
    request_id: str
    platform_id: str
    end_user_id: str | None
    terms: tuple[CandidateTerms, ...]
    n: int
    markup_bps: int
    expires_at: datetime
    # What the sweeper needs to settle or log the call if this instance dies: the request's slug, type, session
    # and metadata, the prompt bound, and each candidate's captured prices and provider (see ``sweep_outcome``).
    recovery: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HoldGrant:
    hold_id: str
    wallet_nanos: int
    budget_nanos: int
    budget_id: str | None
    clamped_limit: int | None


@dataclass(frozen=True, slots=True)
class Settlement:
    """Capture a hold: debit what the call cost (as far as it goes) and write its log row, exactly once."""

    hold_id: str
    record: UsageRecord
    charge_nanos: int  # the end-user charge with markup (0 without a budget)


@dataclass(frozen=True, slots=True)
class Release:
    hold_id: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A stream's progress on its hold (delivered bytes, usage when known), for the sweeper and the journal."""

    hold_id: str
    progress: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""  # for the journal's record and its log lines


@dataclass(frozen=True, slots=True)
class Recover:
    """A stream checkpoint found in the journal of an instance that died before the stream settled: settle the hold
    from it as the sweeper settles one from its checkpoint (``interrupted``, ``estimated``: ``domain/recovery.py``),
    as a late charge when the sweeper resolved the hold first; nothing when the hold is settled or released."""

    hold_id: str
    request_id: str
    progress: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LogOnly:
    """A failed attempt with no output: a usage row with zero cost, nothing captured."""

    record: UsageRecord


@dataclass(frozen=True, slots=True)
class Expire:
    """The sweeper's command for an expired active hold: settle it from its checkpoint, or release it (§9.4)."""

    hold_id: str


MoneyCommand = HoldRequest | Settlement | Release | Checkpoint | LogOnly | Expire | Recover
# What the settlement journal keeps: a settlement, or the provisional record of a stream that never settled.
Journaled = Settlement | Recover
