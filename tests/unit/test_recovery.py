"""The hold sweeper prices an expired stream's checkpoint exactly as its settlement would have (SPEC §9.4), cache
writes included (§19): the hold's recovery terms carry the cache-write price, checkpoints the cache-write count."""

from __future__ import annotations

from typing import Any

from tollway.domain.recovery import recovery_terms, sweep_outcome
from tollway.domain.usage import CallStatus

# $3 / $15 / $0.30 / $3.75 per Mtok, as TokenTariff.recovery records a row's captured prices
SERVING = {
    "input": 3_000_000_000,
    "output": 15_000_000_000,
    "cached": 300_000_000,
    "cache_write": 3_750_000_000,
    "provider_id": "prov",
    "upstream_model": "claude",
}


def _terms(serving: dict[str, Any]) -> dict[str, Any]:
    return {**recovery_terms("sonnet", "chat.completion", None, {}, 40, {"row": serving}), "markup_bps": 1500}


def test_checkpointed_cache_writes_are_priced_at_the_cache_write_price() -> None:
    checkpoint = {"model_id": "row", "delivered_bytes": 12, "usage": [7000, 500, 2000, 4000]}
    record, charge, captured = sweep_outcome("req", "plat", "eu", _terms(SERVING), checkpoint)
    assert captured and record.status is CallStatus.INTERRUPTED
    assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == (7000, 500, 2000)
    assert (record.cost_nanos, charge, record.charged_nanos) == (26_100_000, 30_015_000, 30_015_000)


def test_older_holds_and_checkpoints_still_settle() -> None:
    """Holds placed before §19 have no cache-write price (the input price applies) and three-count checkpoints."""
    older = {k: v for k, v in SERVING.items() if k != "cache_write"}
    record, _, _ = sweep_outcome("req", "plat", None, _terms(older), {"model_id": "row", "usage": [7000, 500, 2000]})
    assert record.cost_nanos == 23_100_000 and record.charged_nanos is None
    record, _, _ = sweep_outcome(
        "req", "plat", None, _terms(older), {"model_id": "row", "usage": [7000, 500, 2000, 4000]}
    )
    assert record.cost_nanos == 23_100_000  # writes at the input price
