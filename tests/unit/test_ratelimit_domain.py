"""Rate-limit rules (SPEC §10): precedence, degraded shares, the admission decision with the TPM clamp, Retry-After,
the x-ratelimit-* header values and the refusal messages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tollway.domain.platform_settings import RateLimits
from tollway.domain.ratelimit import (
    Decision,
    Dimension,
    Resolution,
    TokenDemand,
    decide,
    format_reset,
    ms_until_midnight,
    rate_limit_headers,
    refusal_message,
    requests_wait_ms,
    resolve_limits,
    retry_after_s,
    shared_limits,
    tokens_wait_ms,
)


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def _decision(limits: RateLimits, **state: int) -> Decision:
    values = {
        "retry_after_ms": 0,
        "requests_in_window": 0,
        "requests_today": 0,
        "tokens_in_window": 0,
        "window_reset_ms": 0,
        "tokens_reset_ms": 0,
        "day_reset_ms": 0,
    }
    values.update(state)
    return Decision(limits, (), **values)


# -- which limits apply ------------------------------------------------------------------------------------------


def test_no_override_no_default_is_none() -> None:
    effective = resolve_limits(None, RateLimits())
    assert effective.resolution is Resolution.NONE
    assert not effective.limits.any_set


def test_platform_default_applies_without_override() -> None:
    effective = resolve_limits(None, RateLimits(rpm=60, tpm=None, rpd=1000))
    assert effective.resolution is Resolution.DEFAULT
    assert effective.limits == RateLimits(rpm=60, tpm=None, rpd=1000)


def test_override_wins_per_dimension_and_null_inherits() -> None:
    effective = resolve_limits(RateLimits(rpm=30, tpm=None, rpd=None), RateLimits(rpm=60, tpm=200_000, rpd=None))
    assert effective.resolution is Resolution.EXPLICIT
    assert effective.limits == RateLimits(rpm=30, tpm=200_000, rpd=None)


def test_all_null_override_is_still_explicit() -> None:
    effective = resolve_limits(RateLimits(), RateLimits(rpm=60))
    assert effective.resolution is Resolution.EXPLICIT
    assert effective.limits == RateLimits(rpm=60)
    assert resolve_limits(RateLimits(), RateLimits()).resolution is Resolution.EXPLICIT


def test_shared_limits_floor_and_at_least_one() -> None:
    assert shared_limits(RateLimits(rpm=100, tpm=10_000, rpd=None), 3) == RateLimits(rpm=33, tpm=3333, rpd=None)
    assert shared_limits(RateLimits(rpm=2, tpm=None, rpd=1), 3) == RateLimits(rpm=1, tpm=None, rpd=1)
    same = RateLimits(rpm=7)
    assert shared_limits(same, 1) is same


# -- the decision ------------------------------------------------------------------------------------------------


def test_token_demand_estimate_and_minimum() -> None:
    demand = TokenDemand(prompt_tokens=500, n=2, output_limit=1000, min_output=16)
    assert demand.estimate == 2500
    assert demand.minimum == 532
    assert TokenDemand(10, 1, 5, 50).minimum == 15  # a minimum above the limit cannot raise it
    for bad in ((-1, 1, 1, 1), (1, 0, 1, 1), (1, 1, -1, 1), (1, 1, 1, 0)):
        with pytest.raises(ValueError, match="invalid token demand"):
            TokenDemand(*bad)


def test_rpm_and_rpd_refuse_at_the_limit() -> None:
    demand = TokenDemand(10, 1, 10)
    assert decide(RateLimits(rpm=3), demand, 2, 0, 0).refused == ()
    assert decide(RateLimits(rpm=3), demand, 3, 0, 0).refused == (Dimension.RPM,)
    assert decide(RateLimits(rpd=5), demand, 0, 5, 0).refused == (Dimension.RPD,)
    assert decide(RateLimits(rpm=3, rpd=5), demand, 9, 9, 0).refused == (Dimension.RPM, Dimension.RPD)


def test_tpm_admits_the_estimate_when_it_fits() -> None:
    verdict = decide(RateLimits(tpm=10_000), TokenDemand(500, 1, 1000), 0, 0, 8500)
    assert verdict.refused == ()
    assert verdict.reserved_tokens == 1500
    assert verdict.clamped_output_limit is None


def test_tpm_clamps_to_the_largest_output_that_fits() -> None:
    # 9,000 used of 10,000: headroom 1,000 covers T_p + 1 × 1 but not the estimate 1,500.
    verdict = decide(RateLimits(tpm=10_000), TokenDemand(500, 1, 1000, min_output=1), 6, 6, 9000)
    assert verdict.clamped_output_limit == 500
    assert verdict.reserved_tokens == 1000
    # n = 3: ⌊(1,000 − 500) ÷ 3⌋ = 166 per choice, and only 998 tokens are reserved.
    verdict = decide(RateLimits(tpm=10_000), TokenDemand(500, 3, 1000), 0, 0, 9000)
    assert (verdict.clamped_output_limit, verdict.reserved_tokens) == (166, 998)


def test_tpm_refuses_below_the_minimum_and_refusal_reserves_nothing() -> None:
    verdict = decide(RateLimits(tpm=10_000), TokenDemand(500, 1, 1000, min_output=600), 6, 6, 9000)
    assert verdict.refused == (Dimension.TPM,)
    assert verdict.reserved_tokens == 0
    assert verdict.clamped_output_limit is None


def test_a_refusal_elsewhere_prevents_a_clamp() -> None:
    verdict = decide(RateLimits(rpm=1, tpm=10_000), TokenDemand(500, 1, 1000), 1, 0, 9000)
    assert verdict.refused == (Dimension.RPM,)
    assert verdict.clamped_output_limit is None


# -- waits and Retry-After ---------------------------------------------------------------------------------------


def test_requests_wait_is_until_the_right_admission_expires() -> None:
    stamps = [1_000, 11_000, 21_000]
    assert requests_wait_ms(3, 3, stamps.__getitem__, 30_000) == 31_000  # the oldest leaves at 61,000
    assert requests_wait_ms(3, 2, stamps.__getitem__, 30_000) == 41_000  # lowered limit: two must leave
    assert requests_wait_ms(1, 3, stamps.__getitem__, 30_000) == 0


def test_tokens_wait_frees_oldest_first() -> None:
    entries = [(0, 1000), (10_000, 1000), (20_000, 1000)]  # 3,000 of 3,500 used at 30 s
    assert tokens_wait_ms(entries, 3000, 3500, 1000, 30_000) == 30_000  # the first must leave (at 60 s)
    assert tokens_wait_ms(entries, 3000, 3500, 2000, 30_000) == 40_000  # two must leave
    assert tokens_wait_ms(entries, 3000, 3500, 500, 30_000) == 0
    assert tokens_wait_ms(entries, 3000, 3500, 3501, 30_000) == 60_000  # never fits: 60 s (SPEC §10)


def test_retry_after_is_whole_seconds_rounded_up_at_least_one() -> None:
    assert [retry_after_s(ms) for ms in (0, 1, 999, 1000, 1001, 40_000, 59_999)] == [1, 1, 1, 1, 2, 40, 60]


def test_midnight_utc() -> None:
    assert ms_until_midnight(_ms("2026-05-01T23:59:50")) == 10_000
    assert ms_until_midnight(_ms("2026-05-02T00:00:00")) == 86_400_000
    assert retry_after_s(ms_until_midnight(_ms("2026-05-01T12:00:00.500"))) == 43_200


# -- headers and messages ----------------------------------------------------------------------------------------


def test_format_reset() -> None:
    assert [format_reset(ms) for ms in (-5, 0, 1, 500, 1250, 42_000, 59_999, 60_000)] == [
        "0s", "0s", "0.001s", "0.5s", "1.25s", "42s", "59.999s", "60s",
    ]  # fmt: skip


def test_headers_for_rpm_and_tpm() -> None:
    decision = _decision(
        RateLimits(rpm=60, tpm=10_000, rpd=1000),
        requests_in_window=12,
        requests_today=500,
        tokens_in_window=10_400,
        window_reset_ms=42_000,
        tokens_reset_ms=500,
        day_reset_ms=3_600_000,
    )
    assert rate_limit_headers(decision) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "48",
        "x-ratelimit-reset-requests": "42s",
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "0",  # an actual total above the estimate can overshoot; never negative
        "x-ratelimit-reset-tokens": "0.5s",
    }


def test_headers_report_rpd_when_no_rpm_and_nothing_without_tpm() -> None:
    decision = _decision(RateLimits(rpd=1000), requests_in_window=3, requests_today=10, day_reset_ms=3_600_000)
    assert rate_limit_headers(decision) == {
        "x-ratelimit-limit-requests": "1000",
        "x-ratelimit-remaining-requests": "990",
        "x-ratelimit-reset-requests": "3600s",
    }
    assert rate_limit_headers(_decision(RateLimits())) == {}
    tokens_only = rate_limit_headers(_decision(RateLimits(tpm=100), tokens_in_window=40, tokens_reset_ms=1500))
    assert tokens_only == {
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "60",
        "x-ratelimit-reset-tokens": "1.5s",
    }


@pytest.mark.parametrize(
    ("refused", "demand", "expected"),
    [
        ((Dimension.RPM, Dimension.TPM), TokenDemand(10, 1, 10), "60 requests per minute (RPM)"),
        ((Dimension.RPD,), TokenDemand(10, 1, 10), "1000 requests per day (RPD)"),
        ((Dimension.TPM,), TokenDemand(10, 1, 10), "10000 tokens per minute (TPM)"),
        ((Dimension.TPM,), TokenDemand(20_000, 1, 10), "needs at least 20001 tokens"),
    ],
)
def test_refusal_message_names_the_first_dimension(
    refused: tuple[Dimension, ...], demand: TokenDemand, expected: str
) -> None:
    decision = _decision(RateLimits(rpm=60, tpm=10_000, rpd=1000), retry_after_ms=12_300)
    decision.refused = refused
    message = refusal_message(decision, demand)
    assert expected in message
    assert message.startswith("Rate limit exceeded")
