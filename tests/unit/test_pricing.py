"""SPEC §9.2 cost and charge arithmetic: integer nano-dollars, rounded up once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tollway.domain.pricing import (
    Prices,
    Usage,
    charge_nanos,
    cost_nanos,
    image_charge_nanos,
    image_cost_nanos,
    worst_case_prices,
)

# $0.15 / $0.075 / $0.60 per Mtok, in n$ per Mtok
SPEC_PRICES = Prices(input_nanos=150_000_000, output_nanos=600_000_000, cached_input_nanos=75_000_000)


def test_spec_example_cost_and_charge() -> None:
    usage = Usage(prompt_tokens=1200, completion_tokens=300, cached_tokens=200)
    assert cost_nanos(usage, SPEC_PRICES) == 345_000  # $0.000345
    assert charge_nanos(usage, SPEC_PRICES, markup_bps=1500) == 396_750  # $0.00039675


def test_rounding_is_upward_once() -> None:
    one_token = Usage(prompt_tokens=1, completion_tokens=0)
    assert cost_nanos(one_token, Prices(1, 1)) == 1  # 10⁻⁶ n$ rounds up to 1 n$
    assert cost_nanos(Usage(0, 0), Prices(1, 1)) == 0
    assert charge_nanos(Usage(3, 0), Prices(333_333, 0), 0) == 1  # 0.999999 n$ -> 1


def test_cached_price_defaults_to_input_price() -> None:
    prices = Prices(150_000_000, 600_000_000)
    assert cost_nanos(Usage(1200, 300, 200), prices) == 360_000


def test_worst_case_uses_the_higher_input_price() -> None:
    assert worst_case_prices(Prices(100, 5, 300)).input_nanos == 300
    assert worst_case_prices(Prices(300, 5, 100)).input_nanos == 300


def test_images() -> None:
    assert image_cost_nanos(3, 40_000_000) == 120_000_000
    assert image_charge_nanos(120_000_000, 1500) == 138_000_000
    assert image_charge_nanos(1, 1) == 2


@given(
    st.integers(0, 10**7),
    st.integers(0, 10**7),
    st.integers(0, 10**7),
    st.integers(0, 10**11),
    st.integers(0, 10**11),
    st.integers(0, 100_000),
)
def test_charge_never_below_cost_and_exact(p: int, k: int, o: int, p_in: int, p_out: int, b: int) -> None:
    usage = Usage(p + k, o, k)
    prices = Prices(p_in, p_out)
    exact = (p + k) * p_in + o * p_out
    assert cost_nanos(usage, prices) == -(-exact // 10**6)
    assert charge_nanos(usage, prices, b) >= cost_nanos(usage, prices)
    assert charge_nanos(usage, prices, 0) == cost_nanos(usage, prices)


# SPEC §19: cache writes (Anthropic cache_creation_input_tokens) at the row's cache-write price.
CACHE_PRICES = Prices(3_000_000_000, 15_000_000_000, cached_input_nanos=300_000_000, cache_write_nanos=3_750_000_000)


def test_cache_writes_at_the_cache_write_price() -> None:
    # 1,000 fresh + 2,000 cache reads + 4,000 cache writes + 500 out at $3 / $0.30 / $3.75 / $15 per Mtok:
    # 1000·3 + 2000·0.3 + 4000·3.75 + 500·15 = 3000 + 600 + 15000 + 7500 = $0.0261
    usage = Usage(prompt_tokens=7000, completion_tokens=500, cached_tokens=2000, cache_write_tokens=4000)
    assert cost_nanos(usage, CACHE_PRICES) == 26_100_000
    assert charge_nanos(usage, CACHE_PRICES, markup_bps=1500) == 30_015_000  # × 1.15


def test_cache_write_price_defaults_to_input_price() -> None:
    prices = Prices(3_000_000_000, 15_000_000_000, 300_000_000)
    usage = Usage(7000, 500, 2000, cache_write_tokens=4000)
    assert cost_nanos(usage, prices) == (5000 * 3_000 + 2000 * 300 + 500 * 15_000)  # writes at p_in


def test_cache_counts_never_exceed_the_prompt() -> None:
    """A report claiming more cached and written tokens than the prompt is capped: no token is billed twice."""
    assert cost_nanos(Usage(100, 0, 80, cache_write_tokens=50), CACHE_PRICES) == -(
        -(80 * 300_000_000 + 20 * 3_750_000_000) // 10**6
    )
    assert cost_nanos(Usage(100, 0, 0, cache_write_tokens=500), CACHE_PRICES) == 100 * 3_750


def test_cache_write_rounding_once_upward() -> None:
    # one written token at 1 n$/Mtok: 10⁻⁶ n$ -> 1 n$
    assert cost_nanos(Usage(1, 0, 0, cache_write_tokens=1), Prices(0, 0, 0, 1)) == 1


def test_worst_case_covers_the_cache_write_price() -> None:
    assert worst_case_prices(CACHE_PRICES).input_nanos == 3_750_000_000
    assert worst_case_prices(Prices(100, 5, 300, 200)).input_nanos == 300
    assert worst_case_prices(Prices(100, 5, None, None)).input_nanos == 100


@given(
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**11),
    st.integers(0, 10**11),
    st.integers(0, 10**11),
    st.integers(0, 10**11),
)
def test_exact_cost_formula_with_cache_writes(
    fresh: int, k: int, kw: int, o: int, p_in: int, p_cached: int, p_write: int, p_out: int
) -> None:
    usage = Usage(fresh + k + kw, o, k, cache_write_tokens=kw)
    prices = Prices(p_in, p_out, p_cached, p_write)
    exact = fresh * p_in + k * p_cached + kw * p_write + o * p_out
    assert cost_nanos(usage, prices) == -(-exact // 10**6)
    # the hold's worst case never falls below the actual cost
    assert cost_nanos(usage, worst_case_prices(prices)) >= cost_nanos(usage, prices)
