"""How each kind of paid call is priced (SPEC §9.2, §9.3): its worst case per candidate for the hold, what the
sweeper needs to price it after a crash, and the cost and charge of what it delivered.

The call lifecycle (``services/inference/call.py``) is the same for every kind; a new kind of paid call brings a
tariff here and its upstream step, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tollway.domain.catalog import Candidate, ModelRow
from tollway.domain.holds import CandidateTerms, image_terms
from tollway.domain.pricing import Usage, charge_nanos, cost_nanos, image_charge_nanos, image_cost_nanos


@dataclass(frozen=True, slots=True)
class Metered:
    """What a call delivered: tokens (and how they were counted), and units for per-unit tariffs (images)."""

    usage: Usage
    method: str = "reported"  # "reported" by the provider, or "estimated" by Tollway (§9.4)
    units: int = 0  # images returned (images), calls made (moderations)


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


class EmbeddingTariff:
    """Embeddings (SPEC §19): prompt tokens at the row's input price, no output. Built per request, since the hold's
    prompt bound caps each input at the row's context window (``EmbeddingRequest.prompt_bound``): the hold is that
    bound × max(input, cached price), the charge the prompt tokens used × the input price."""

    def __init__(self, input_bounds: tuple[int, ...]) -> None:
        self._bounds = input_bounds

    def prompt_tokens(self, candidate: Candidate) -> int:
        """T_p for one candidate row: Σ over the inputs, each capped at the row's context window."""
        window = candidate.model.context_window
        return sum(self._bounds) if window is None else sum(min(bound, window) for bound in self._bounds)

    def terms(self, candidate: Candidate, output_limit: int, prompt_bound: int) -> CandidateTerms:
        model = candidate.model
        # No output: limit 0, so the worst case is the prompt alone and ``quote_hold`` never clamps.
        return CandidateTerms(model.id, model.prices, 0, 1, self.prompt_tokens(candidate))

    def recovery(self, candidate: Candidate) -> dict[str, Any]:
        return TOKENS.recovery(candidate)

    def price(self, candidate: Candidate, metered: Metered, markup_bps: int) -> tuple[int, int]:
        prices = candidate.model.prices
        usage = Usage(metered.usage.prompt_tokens, 0)  # an embedding has no output tokens to bill
        return cost_nanos(usage, prices), charge_nanos(usage, prices, markup_bps)


class UnitTariff:
    """A price per unit (SPEC §7.7, §19): the hold is n × the row's unit price, never clamped; the charge is the
    units delivered × that price. Images are priced per image returned, moderations per call."""

    def __init__(self, unit_price: Callable[[ModelRow], int | None], what: str) -> None:
        self._unit_price = unit_price
        self._what = what

    def terms(self, candidate: Candidate, output_limit: int, prompt_bound: int) -> CandidateTerms:
        return image_terms(candidate.model.id, candidate.model.prices, self._price(candidate))

    def recovery(self, candidate: Candidate) -> dict[str, Any]:
        return {
            "input": 0,
            "output": 0,
            "cached": None,
            self._what: self._price(candidate),
            "provider_id": candidate.provider.id,
            "upstream_model": candidate.model.upstream_model,
        }

    def price(self, candidate: Candidate, metered: Metered, markup_bps: int) -> tuple[int, int]:
        cost = image_cost_nanos(metered.units, self._price(candidate))
        return cost, image_charge_nanos(cost, markup_bps)

    def _price(self, candidate: Candidate) -> int:
        price = self._unit_price(candidate.model)
        assert price is not None, f"only rows with a {self._what} price are served at one"
        return price


TOKENS = TokenTariff()
IMAGES = UnitTariff(lambda row: row.price_per_image_nanos, "image")
MODERATIONS = UnitTariff(lambda row: row.price_per_request_nanos, "request")


class CallTariff(UnitTariff):
    """MCP tool calls (SPEC §16.3): the app's price per call (0 within the free tier). An app is no provider, so the
    sweeper's row of a lost call names none."""

    def recovery(self, candidate: Candidate) -> dict[str, Any]:
        return {**super().recovery(candidate), "provider_id": None, "upstream_model": None}


MCP_CALLS = CallTariff(lambda row: row.price_per_request_nanos, "call")
