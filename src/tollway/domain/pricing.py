"""Turning token usage into nano-dollars (SPEC §9.2). Rounding happens once per request, upward, here only.

Prices are integers of n$ per million tokens; E is in units of 10⁻⁶ n$.
"""

from __future__ import annotations

from dataclasses import dataclass

_MTOK = 1_000_000
_BASIS = 10_000


@dataclass(frozen=True, slots=True)
class Prices:
    input_nanos: int
    output_nanos: int
    cached_input_nanos: int | None = None
    cache_write_nanos: int | None = None  # Anthropic cache-creation tokens; None → the input price (§19)

    @property
    def cached_nanos(self) -> int:
        return self.input_nanos if self.cached_input_nanos is None else self.cached_input_nanos

    @property
    def cache_write_price_nanos(self) -> int:
        return self.input_nanos if self.cache_write_nanos is None else self.cache_write_nanos


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int | None = None
    # Part of prompt_tokens: Anthropic's cache_creation_input_tokens, reported back by /v1/messages (SPEC §19).
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def exact_cost(usage: Usage, prices: Prices) -> int:
    """E = (P − K)·p_in + K·p_cached + O·p_out, in 10⁻⁶ n$."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    return (
        (usage.prompt_tokens - cached) * prices.input_nanos
        + cached * prices.cached_nanos
        + usage.completion_tokens * prices.output_nanos
    )


def cost_nanos(usage: Usage, prices: Prices) -> int:
    """Raw provider cost charged to the wallet: ⌈E / 10⁶⌉."""
    return _ceil_div(exact_cost(usage, prices), _MTOK)


def charge_nanos(usage: Usage, prices: Prices, markup_bps: int) -> int:
    """End-user charge with markup b (basis points): ⌈E · (10⁴ + b) / 10¹⁰⌉."""
    return _ceil_div(exact_cost(usage, prices) * (_BASIS + markup_bps), _MTOK * _BASIS)


def worst_case_prices(prices: Prices) -> Prices:
    """For holds p_in is replaced by max(p_in, p_cached) (SPEC §9.3)."""
    return Prices(max(prices.input_nanos, prices.cached_nanos), prices.output_nanos, None)


def image_cost_nanos(images: int, price_per_image_nanos: int) -> int:
    return images * price_per_image_nanos


def image_charge_nanos(cost: int, markup_bps: int) -> int:
    return _ceil_div(cost * (_BASIS + markup_bps), _BASIS)
