"""Hold sizing and clamping (SPEC §9.3): the worst case when it fits, else the largest affordable limit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tollway.domain.holds import CandidateTerms, HoldQuote, Refusal, quote_hold
from tollway.domain.pricing import Prices

# $1 per Mtok in, $10 per Mtok out: 100 prompt tokens cost 100 n$·10³… kept simple with whole numbers below.
CHEAP = CandidateTerms("a", Prices(1_000_000_000, 10_000_000_000), output_limit=1000, min_output=16, prompt_tokens=100)
DEAR = CandidateTerms("b", Prices(2_000_000_000, 20_000_000_000), output_limit=500, min_output=1, prompt_tokens=100)


def test_full_worst_case_when_it_fits() -> None:
    quote = quote_hold((CHEAP,), n=1, markup_bps=0, wallet_available=10**12, budget_available=None)
    # 100 × $1/Mtok + 1000 × $10/Mtok = 100 µ$ + 10,000 µ$ = 10,100,000 n$
    assert quote == HoldQuote(wallet_nanos=10_100_000, budget_nanos=0, clamped_limit=None)


def test_budget_hold_carries_markup() -> None:
    quote = quote_hold((CHEAP,), n=1, markup_bps=1500, wallet_available=10**12, budget_available=10**12)
    assert isinstance(quote, HoldQuote)
    assert quote.budget_nanos == 11_615_000  # 10,100,000 × 1.15


def test_largest_candidate_sets_the_hold() -> None:
    quote = quote_hold((CHEAP, DEAR), n=1, markup_bps=0, wallet_available=10**12, budget_available=None)
    assert isinstance(quote, HoldQuote)
    # DEAR: 100 × 2 + 500 × 20 = 10,200 µ$; CHEAP: 10,100 µ$
    assert quote.wallet_nanos == 10_200_000


def test_clamps_to_largest_affordable_limit() -> None:
    # 100 prompt = 100,000 n$; each output token 10,000 n$; 600,000 n$ affords 50 output tokens
    quote = quote_hold((CHEAP,), n=1, markup_bps=0, wallet_available=600_000, budget_available=None)
    assert quote == HoldQuote(wallet_nanos=600_000, budget_nanos=0, clamped_limit=50)


def test_clamp_counts_every_choice() -> None:
    quote = quote_hold((CHEAP,), n=2, markup_bps=0, wallet_available=600_000, budget_available=None)
    assert isinstance(quote, HoldQuote)
    assert quote.clamped_limit == 25


def test_below_minimum_is_refused_budget_first() -> None:
    # the minimum (16 tokens) needs 100,000 + 160,000 n$
    assert quote_hold((CHEAP,), 1, 0, wallet_available=259_999, budget_available=None) is Refusal.WALLET
    assert quote_hold((CHEAP,), 1, 0, wallet_available=10**12, budget_available=259_999) is Refusal.BUDGET
    assert quote_hold((CHEAP,), 1, 0, wallet_available=0, budget_available=0) is Refusal.BUDGET
    assert isinstance(quote_hold((CHEAP,), 1, 0, wallet_available=260_000, budget_available=None), HoldQuote)


@given(st.integers(0, 2 * 10**7), st.integers(0, 2 * 10**7), st.integers(1, 4), st.integers(0, 2000))
def test_quote_never_exceeds_what_is_available(wallet: int, budget: int, n: int, markup: int) -> None:
    quote = quote_hold((CHEAP, DEAR), n, markup, wallet, budget)
    if isinstance(quote, HoldQuote):
        assert quote.wallet_nanos <= wallet
        assert quote.budget_nanos <= budget
        if quote.clamped_limit is not None:
            assert 16 <= quote.clamped_limit < 1000
            # maximal: one more output token per choice would not fit
            wider = [t.worst(n, quote.clamped_limit + 1, markup) for t in (CHEAP, DEAR)]
            assert max(w for w, _ in wider) > wallet or max(b for _, b in wider) > budget
    else:
        assert quote in (Refusal.WALLET, Refusal.BUDGET)
