"""Platforms as the operator and the platform itself manage them (SPEC §4.3, §5.1): creation with a wallet and a
first key, the settings object and its validation, PATCH semantics (each settings key replaced whole), deletion."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from tollway.domain.conflicts import Duplicate
from tollway.domain.mcp import BadOrigin, normalise_origin
from tollway.domain.platform_settings import BudgetPeriod, PlatformSettings
from tollway.domain.platforms import SLUG_MAX
from tollway.domain.ports.management import PlatformRepository
from tollway.domain.records import Record
from tollway.errors import InvalidRequest, NotFound
from tollway.services.management import fields as f
from tollway.services.management.credentials import new_platform_key

PLATFORM_SLUG: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
RATE_LIMIT_MAX: Final = 10**9
MARKUP_MAX: Final = 1000
_READ_ONLY: Final = ("id", "created_at", "updated_at")
_SETTINGS_KEYS: Final = (
    "default_budget", "markup_percentage", "rate_limits", "wallet_low_balance_threshold",
    "mcp_free_calls_per_month", "mcp_external_servers", "mcp_redirect_origins",
)  # fmt: skip
MCP_FREE_CALLS_MAX: Final = 10**9
MCP_ORIGINS_MAX: Final = 50
_DIMENSIONS: Final = ("rpm", "tpm", "rpd")


@dataclass(frozen=True, slots=True)
class CreatedPlatform:
    platform: Record
    wallet: Record
    api_key: Record
    raw_key: str


def derive_slug(name: str) -> str:
    """Lowercase; every run of characters outside [a-z0-9] becomes one '-'; trimmed; at most 64 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:SLUG_MAX].strip("-")
    return slug or "platform"


def settings_patch(value: object, param: str = "settings") -> dict[str, Any]:
    """The stored form (``PlatformSettings.to_stored`` keys) of each settings key present in ``value``."""
    body = f.as_object(value, param)
    f.check_keys(body, _SETTINGS_KEYS, prefix=param)
    patch: dict[str, Any] = {}
    if "default_budget" in body:
        patch["default_budget"] = _default_budget(body["default_budget"], f.path_of(param, "default_budget"))
    if "markup_percentage" in body:
        patch["markup_bps"] = _markup_bps(body["markup_percentage"], f.path_of(param, "markup_percentage"))
    if "rate_limits" in body:
        patch["rate_limits"] = _rate_limits(body["rate_limits"], f.path_of(param, "rate_limits"))
    if "wallet_low_balance_threshold" in body:
        threshold = f.path_of(param, "wallet_low_balance_threshold")
        patch["wallet_low_balance_threshold_nanos"] = f.as_opt_usd(
            body["wallet_low_balance_threshold"], threshold, allow_zero=True
        )
    if "mcp_free_calls_per_month" in body:
        free = f.path_of(param, "mcp_free_calls_per_month")
        patch["mcp_free_calls_per_month"] = f.as_int(
            body["mcp_free_calls_per_month"], free, minimum=0, maximum=MCP_FREE_CALLS_MAX
        )
    if "mcp_external_servers" in body:
        external = f.path_of(param, "mcp_external_servers")
        patch["mcp_external_servers"] = f.as_bool(body["mcp_external_servers"], external)
    if "mcp_redirect_origins" in body:
        origins = f.path_of(param, "mcp_redirect_origins")
        patch["mcp_redirect_origins"] = _origins(body["mcp_redirect_origins"], origins)
    return patch


def _origins(value: object, param: str) -> list[str]:
    """Each ``scheme://host[:port]`` (http or https), normalised; duplicates dropped (SPEC §16.1)."""
    if not isinstance(value, list) or len(value) > MCP_ORIGINS_MAX:
        raise InvalidRequest(f"{param} must be a list of at most {MCP_ORIGINS_MAX} origins.", param)
    chosen: list[str] = []
    for index, item in enumerate(value):
        at = f"{param}[{index}]"
        try:
            origin = normalise_origin(f.as_str(item, at, max_len=300))
        except BadOrigin as exc:
            raise InvalidRequest(f"{at} {exc}", at) from None
        if origin not in chosen:
            chosen.append(origin)
    return chosen


def _default_budget(value: object, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    body = f.as_object(value, param)
    f.check_keys(body, ("max_usd", "period"), prefix=param)
    max_nanos = f.as_usd(f.required(body, "max_usd", param), f.path_of(param, "max_usd"), allow_zero=True)
    period_param = f.path_of(param, "period")
    period = body.get("period", BudgetPeriod.ONE_TIME.value)
    if not isinstance(period, str) or period not in BudgetPeriod.__members__.values():
        raise InvalidRequest(f"{period_param} must be one of one_time, daily, monthly.", period_param)
    return {"max_nanos": max_nanos, "period": period}


def _markup_bps(value: object, param: str) -> int:
    """0–1000 with at most 2 decimals, stored exactly as basis points (markup × 100)."""
    rule = f"{param} must be a number from 0 to {MARKUP_MAX} with at most 2 decimals."
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise InvalidRequest(rule, param)
    if isinstance(value, Decimal) and not value.is_finite():
        raise InvalidRequest(rule, param)
    if not 0 <= value <= MARKUP_MAX:
        raise InvalidRequest(rule, param)
    scaled = Decimal(value) * 100
    if scaled != scaled.to_integral_value():
        raise InvalidRequest(rule, param)
    return int(scaled)


def _rate_limits(value: object, param: str) -> dict[str, int | None]:
    """Replaced whole: a dimension left out is unlimited (null), like the end-user override PUT (§5.6)."""
    if value is None:
        return dict.fromkeys(_DIMENSIONS)
    body = f.as_object(value, param)
    f.check_keys(body, _DIMENSIONS, prefix=param)
    return {
        name: f.as_opt_int(body.get(name), f.path_of(param, name), minimum=1, maximum=RATE_LIMIT_MAX)
        for name in _DIMENSIONS
    }


class Platforms:
    def __init__(self, store: PlatformRepository) -> None:
        self._store = store

    async def create(self, body: Mapping[str, Any]) -> CreatedPlatform:
        f.check_keys(body, ("name", "slug", "settings"), read_only=_READ_ONLY)
        name = f.as_str(f.required(body, "name"), "name", max_len=100)
        slug = body.get("slug")
        if slug is not None:
            slug = f.as_str(slug, "slug", max_len=SLUG_MAX, pattern=PLATFORM_SLUG)
        stored = PlatformSettings().to_stored()
        if "settings" in body:
            stored.update(settings_patch(body["settings"]))
        key = new_platform_key({})
        try:
            platform, wallet, api_key = await self._store.create(
                name=name, slug=slug, slug_base=derive_slug(name), settings=stored, key_values=key.values
            )
        except Duplicate:
            taken = f"A platform with slug '{slug}' already exists." if slug else "No free slug could be derived."
            raise InvalidRequest(taken, "slug") from None
        return CreatedPlatform(platform, wallet, api_key, key.raw_key)

    async def get(self, platform_id: str) -> Record:
        platform = await self._store.get(platform_id)
        if platform is None:
            raise NotFound("No platform with this id.")
        return platform

    async def list_platforms(self, offset: int, limit: int) -> tuple[list[Record], int]:
        return await self._store.list_platforms(offset, limit)

    async def update(self, platform_id: str, body: Mapping[str, Any]) -> Record:
        f.check_keys(body, ("name", "settings"), read_only=(*_READ_ONLY, "slug"))
        name = f.as_str(body["name"], "name", max_len=100) if "name" in body else None
        patch = settings_patch(body["settings"]) if "settings" in body else {}
        updated = await self._store.update(platform_id, name=name, settings_patch=patch)
        if updated is None:
            raise NotFound("No platform with this id.")
        return updated

    async def delete(self, platform_id: str) -> None:
        if not await self._store.soft_delete(platform_id):
            raise NotFound("No platform with this id.")
