"""How each kind of paid call is priced (SPEC §9.2, §9.3): its worst case per candidate for the hold, what the
sweeper needs to price it after a crash, and the cost and charge of what it delivered.

The call lifecycle (``services/inference/call.py``) is the same for every kind; a new kind of paid call brings a
tariff here and its upstream step, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tollway.domain.catalog import Candidate
from tollway.domain.holds import CandidateTerms, image_terms
from tollway.domain.pricing import Usage, charge_nanos, cost_nanos, image_charge_nanos, image_cost_nanos


@dataclass(frozen=True, slots=True)
class Metered:
    """What a call delivered: tokens (and how they were counted), and units for per-unit tariffs (images)."""

    usage: Usage
    method: str = "reported"  # "reported" by the provider, or "estimated" by Tollway (§9.4)
    units: int = 0


NOTHING = Metered(Usage(0, 0))


class Tariff(Protocol):
    def terms(self, candidate: Candidate, output_limit: int, prompt_bound: int) -> CandidateTerms:
        """What the hold needs to know about one candidate row (§9.3)."""
        ...

    def recovery(self, candidate: Candidate) -> dict[str, Any]:
        """The row's captured prices and provider, kept on the hold for the sweeper (§9.4)."""
        ...

    def price(self, candidate: Candidate, metered: Metered, markup_bps: int) -> tuple[int, int]:
        """(cost to the wallet, charge to the end user with markup), rounded once (§9.2)."""
        ...


class TokenTariff:
    """Prices per million prompt, cached, cache-write and completion tokens (chat, Responses turns)."""

    def terms(self, candidate: Candidate, output_limit: int, prompt_bound: int) -> CandidateTerms:
        model = candidate.model
        return CandidateTerms(
            model_id=model.id,
            prices=model.prices,
            output_limit=output_limit,
            min_output=model.min_output,
            prompt_tokens=min(prompt_bound, model.context_window or prompt_bound),
        )

    def recovery(self, candidate: Candidate) -> dict[str, Any]:
        prices = candidate.model.prices
        return {
            "input": prices.input_nanos,
            "output": prices.output_nanos,
            "cached": prices.cached_input_nanos,
            "cache_write": prices.cache_write_nanos,
            "provider_id": candidate.provider.id,
            "upstream_model": candidate.model.upstream_model,
        }

    def price(self, candidate: Candidate, metered: Metered, markup_bps: int) -> tuple[int, int]:
        prices = candidate.model.prices
        return cost_nanos(metered.usage, prices), charge_nanos(metered.usage, prices, markup_bps)


class ImageTariff:
    """A price per image (§7.7): the hold is n × the row's price, never clamped; the charge is images returned."""

    def terms(self, candidate: Candidate, output_limit: int, prompt_bound: int) -> CandidateTerms:
        return image_terms(candidate.model.id, candidate.model.prices, _image_price(candidate))

    def recovery(self, candidate: Candidate) -> dict[str, Any]:
        return {
            "input": 0,
            "output": 0,
            "cached": None,
            "image": _image_price(candidate),
            "provider_id": candidate.provider.id,
            "upstream_model": candidate.model.upstream_model,
        }

    def price(self, candidate: Candidate, metered: Metered, markup_bps: int) -> tuple[int, int]:
        cost = image_cost_nanos(metered.units, _image_price(candidate))
        return cost, image_charge_nanos(cost, markup_bps)


def _image_price(candidate: Candidate) -> int:
    price = candidate.model.price_per_image_nanos
    assert price is not None, "only rows with price_per_image serve images"
    return price


TOKENS = TokenTariff()
IMAGES = ImageTariff()
