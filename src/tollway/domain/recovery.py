"""What the hold sweeper does with an expired hold whose instance never settled it (SPEC §9.4).

With a streaming checkpoint the call is settled as ``interrupted`` at the captured prices of the serving row (usage
as reported, else estimated from the delivered bytes); without one the hold is released and a zero-cost ``error``
row with ``error_code: "hold_expired"`` is logged.
"""

from __future__ import annotations

from typing import Any

from tollway.domain.estimation import ceil_quarter, estimate_completion_tokens
from tollway.domain.pricing import Prices, Usage, charge_nanos, cost_nanos
from tollway.domain.usage import NO_LABELS, CallLabels, CallStatus, UsageRecord


def recovery_terms(
    slug: str,
    request_type: str,
    session_id: str | None,
    metadata: dict[str, str],
    prompt_bound: int,
    candidates: dict[str, dict[str, Any]],
    labels: CallLabels = NO_LABELS,
) -> dict[str, Any]:
    terms = {
        "slug": slug,
        "request_type": request_type,
        "session_id": session_id,
        "metadata": metadata,
        "prompt_bound": prompt_bound,
        "candidates": candidates,
    }
    if labels != NO_LABELS:
        terms["labels"] = labels.columns()
    return terms


def sweep_outcome(
    request_id: str,
    platform_id: str,
    end_user_id: str | None,
    terms: dict[str, Any],
    checkpoint: dict[str, Any] | None,
) -> tuple[UsageRecord, int, bool]:
    """The log record, the end-user charge and whether the hold is captured (True) or released (False)."""
    markup = int(terms.get("markup_bps", 0))
    candidates: dict[str, dict[str, Any]] = terms.get("candidates", {})
    serving = candidates.get(str((checkpoint or {}).get("model_id")))
    base: dict[str, Any] = {
        "request_id": request_id,
        "platform_id": platform_id,
        "end_user_id": end_user_id,
        "request_type": terms.get("request_type", "chat.completion"),
        "model": terms.get("slug", ""),
        "latency_ms": 0,
        "ttft_ms": None,
        "session_id": terms.get("session_id"),
        "metadata": terms.get("metadata", {}),
        **CallLabels.from_columns(terms.get("labels")).columns(),
    }
    if checkpoint is None or serving is None:
        first = next(iter(candidates.values()), {})
        record = UsageRecord(
            **base,
            provider_id=first.get("provider_id"),
            provider_model=first.get("upstream_model"),
            prompt_tokens=0,
            completion_tokens=0,
            cached_tokens=0,
            cost_nanos=0,
            charged_nanos=0 if end_user_id else None,
            status=CallStatus.ERROR,
            finish_reason=None,
            error_code="hold_expired",
            token_count_method="reported",
        )
        return record, 0, False
    # Holds placed before cache-write prices existed carry no "cache_write": the input price, as the row had then.
    prices = Prices(serving["input"], serving["output"], serving.get("cached"), serving.get("cache_write"))
    reported = checkpoint.get("usage")
    if isinstance(reported, list) and len(reported) in (3, 4):
        # [prompt, completion, cached] (+ cache writes since §19; older checkpoints have three counts)
        written = int(reported[3]) if len(reported) == 4 else 0
        usage = Usage(int(reported[0]), int(reported[1]), int(reported[2]), cache_write_tokens=written)
    else:
        usage = Usage(
            ceil_quarter(int(terms.get("prompt_bound", 0))),
            estimate_completion_tokens(int(checkpoint.get("delivered_bytes", 0))),
        )
    charge = charge_nanos(usage, prices, markup)
    record = UsageRecord(
        **base,
        provider_id=serving.get("provider_id"),
        provider_model=serving.get("upstream_model"),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        cost_nanos=cost_nanos(usage, prices),
        charged_nanos=charge if end_user_id else None,
        status=CallStatus.INTERRUPTED,
        finish_reason="stop",
        error_code=None,
        token_count_method="estimated",
    )
    return record, charge, True
