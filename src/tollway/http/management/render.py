"""Management objects in their SPEC JSON shapes: timestamps RFC 3339 in UTC with ``Z``, money as USD numbers
(§9.1), ``*_nanos`` columns renamed ``*_usd``. Secrets (key digests, sealed provider keys) have no renderer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.domain.catalog import ModelRow, Provider
from tollway.domain.clock import rfc3339
from tollway.domain.money import nanos_to_json_number
from tollway.domain.platform_settings import PlatformSettings

Record = Mapping[str, Any]


def _usd(nanos: int | None) -> Any:
    return None if nanos is None else nanos_to_json_number(int(nanos))


def provider(p: Provider) -> dict[str, Any]:
    return {
        "id": p.id,
        "slug": p.slug,
        "name": p.name,
        "kind": p.kind.value,
        "base_url": p.base_url,
        "is_active": p.is_active,
        "created_at": rfc3339(p.created_at),
        "updated_at": rfc3339(p.updated_at),
    }


def model(m: ModelRow) -> dict[str, Any]:
    return {
        "id": m.id,
        "slug": m.slug,
        "provider_id": m.provider_id,
        "upstream_model": m.upstream_model,
        "input_price_per_mtok": _usd(m.prices.input_nanos),
        "output_price_per_mtok": _usd(m.prices.output_nanos),
        "cached_input_price_per_mtok": _usd(m.prices.cached_input_nanos),
        "cache_write_price_per_mtok": _usd(m.prices.cache_write_nanos),
        "price_per_image": _usd(m.price_per_image_nanos),
        "price_per_request": _usd(m.price_per_request_nanos),
        "priority": m.priority,
        "min_output_tokens": m.min_output_tokens,
        "max_output_tokens": m.max_output_tokens,
        "context_window": m.context_window,
        "is_active": m.is_active,
        "created_at": rfc3339(m.created_at),
        "updated_at": rfc3339(m.updated_at),
    }


def settings(s: PlatformSettings) -> dict[str, Any]:
    budget = s.default_budget
    # markup is a percentage, not money: at most 2 decimals, which a float prints exactly and without exponent.
    markup: int | float = s.markup_bps // 100 if s.markup_bps % 100 == 0 else s.markup_bps / 100
    return {
        "default_budget": None
        if budget is None
        else {"max_usd": _usd(budget.max_nanos), "period": budget.period.value},
        "markup_percentage": markup,
        "rate_limits": {"rpm": s.rate_limits.rpm, "tpm": s.rate_limits.tpm, "rpd": s.rate_limits.rpd},
        "wallet_low_balance_threshold": _usd(s.wallet_low_balance_threshold_nanos),
        "mcp_free_calls_per_month": s.mcp_free_calls_per_month,
        "mcp_external_servers": s.mcp_external_servers,
        "mcp_redirect_origins": list(s.mcp_redirect_origins),
    }


def platform(row: Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "slug": row["slug"],
        "settings": settings(PlatformSettings.from_stored(row["settings"])),
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


def wallet(row: Record, platform_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    balance, held = int(row["balance_nanos"]), int(row["held_nanos"])
    threshold = PlatformSettings.from_stored(platform_settings).wallet_low_balance_threshold_nanos
    return {
        "id": row["id"],
        "platform_id": row["platform_id"],
        "currency": "usd",
        "balance_usd": _usd(balance),
        "held_usd": _usd(held),
        "available_usd": _usd(max(0, balance - held)),
        "low_balance_threshold": _usd(threshold),
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


def wallet_transaction(row: Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "wallet_id": row["wallet_id"],
        "type": row["type"],
        "amount_usd": _usd(row["amount_nanos"]),
        "balance_usd_after": _usd(row["balance_after_nanos"]),
        "description": row["description"],
        "metadata": row["metadata"] if row["metadata"] is not None else {},
        "request_id": row["request_id"],
        "created_at": rfc3339(row["created_at"]),
    }


def api_key(row: Record, raw_key: str | None = None) -> dict[str, Any]:
    body = {
        "id": row["id"],
        "platform_id": row["platform_id"],
        "end_user_id": row["end_user_id"],
        "type": row["type"],
        "name": row["name"],
        "key_prefix": row["key_prefix"],
        "scopes": list(row["scopes"]),
        "is_active": bool(row["is_active"]),
        "expires_at": rfc3339(row["expires_at"]),
        "last_used_at": rfc3339(row["last_used_at"]),
        "revoked_at": rfc3339(row["revoked_at"]),
        "created_at": rfc3339(row["created_at"]),
    }
    if raw_key is not None:
        body["raw_key"] = raw_key
    return body


def llm_config(row: Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "platform_id": row["platform_id"],
        "provider_id": row["provider_id"],
        "provider_slug": row["provider_slug"],
        "is_default": bool(row["is_default"]),
        "is_active": bool(row["is_active"]),
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


def usage_log(row: Record) -> dict[str, Any]:
    """SPEC §12; ``charged_usd`` is null exactly when no charge was computed (platform keys)."""
    return {
        "id": row["id"],
        "platform_id": row["platform_id"],
        "end_user_id": row["end_user_id"],
        "request_type": row["request_type"],
        "model": row["model"],
        "provider_id": row["provider_id"],
        "provider_model": row["provider_model"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "total_tokens": row["total_tokens"],
        "cached_tokens": row["cached_tokens"],
        "latency_ms": row["latency_ms"],
        "ttft_ms": row["ttft_ms"],
        "cost_usd": _usd(row["cost_nanos"]),
        "charged_usd": _usd(row["charged_nanos"]),
        "uncollected_usd": _usd(row["uncollected_nanos"]),
        "status": row["status"],
        "finish_reason": row["finish_reason"],
        "error_code": row["error_code"],
        "token_count_method": row["token_count_method"],
        "request_id": row["request_id"],
        "session_id": row["session_id"],
        "response_id": row["response_id"],
        "iteration": row["iteration"],
        "thread_id": row["thread_id"],
        "mcp_app": row["mcp_app"],
        "mcp_tool": row["mcp_tool"],
        "mcp_free": None if row["mcp_free"] is None else bool(row["mcp_free"]),
        "metadata": row["metadata"] if row["metadata"] is not None else {},
        "created_at": rfc3339(row["created_at"]),
    }
