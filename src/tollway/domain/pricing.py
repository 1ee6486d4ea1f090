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
    cached_tokens: int = 0  # K: prompt tokens read from a cache (OpenAI cached_tokens, Anthropic cache reads, Gemini)
    reasoning_tokens: int | None = None
    # K_w: prompt tokens written to a cache (Anthropic ``cache_creation_input_tokens``), priced at the cache-write
    # price (§19); like K they are part of ``prompt_tokens``.
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def exact_cost(usage: Usage, prices: Prices) -> int:
    """E = (P − K − K_w)·p_in + K·p_cached + K_w·p_cache_write + O·p_out, in 10⁻⁶ n$ (§9.2 with §19's cache
    writes). K and K_w are parts of P: a report claiming more is capped so that no count is billed twice."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
    return (
        (usage.prompt_tokens - cached - written) * prices.input_nanos
        + cached * prices.cached_nanos
        + written * prices.cache_write_price_nanos
        + usage.completion_tokens * prices.output_nanos
    )


def cost_nanos(usage: Usage, prices: Prices) -> int:
    """Raw provider cost charged to the wallet: ⌈E / 10⁶⌉."""
    return _ceil_div(exact_cost(usage, prices), _MTOK)


def charge_nanos(usage: Usage, prices: Prices, markup_bps: int) -> int:
    """End-user charge with markup b (basis points): ⌈E · (10⁴ + b) / 10¹⁰⌉."""
    return _ceil_div(exact_cost(usage, prices) * (_BASIS + markup_bps), _MTOK * _BASIS)


def worst_case_prices(prices: Prices) -> Prices:
    """For holds p_in is replaced by max(p_in, p_cached, p_cache_write) (SPEC §9.3, §19): whichever way the
    provider splits the prompt between fresh, cached and cache-written tokens, the hold covers it."""
    worst_input = max(prices.input_nanos, prices.cached_nanos, prices.cache_write_price_nanos)
    return Prices(worst_input, prices.output_nanos, None)


def image_cost_nanos(images: int, price_per_image_nanos: int) -> int:
    return images * price_per_image_nanos


def image_charge_nanos(cost: int, markup_bps: int) -> int:
    return _ceil_div(cost * (_BASIS + markup_bps), _BASIS)
