"""Platforms as the operator and the platform itself manage them (SPEC §4.3, §5.1): creation with a wallet and a
first key, the settings object and its validation, PATCH semantics (each settings key replaced whole), deletion."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from tollway.domain import fields as f
from tollway.domain.bodies import Body, Boolean, Custom, Field, Integer, Text, Usd
from tollway.domain.conflicts import Duplicate
from tollway.domain.mcp import BadOrigin, normalise_origin
from tollway.domain.platform_settings import BudgetPeriod, PlatformSettings
from tollway.domain.platforms import SLUG_MAX
from tollway.domain.ports.management import PlatformRepository
from tollway.domain.records import Record
from tollway.errors import InvalidRequest, NotFound
from tollway.services.management.credentials import new_platform_key

PLATFORM_SLUG: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
RATE_LIMIT_MAX: Final = 10**9
MARKUP_MAX: Final = 1000
_READ_ONLY: Final = ("id", "created_at", "updated_at")
MCP_FREE_CALLS_MAX: Final = 10**9
MCP_ORIGINS_MAX: Final = 50
_DIMENSIONS: Final = ("rpm", "tpm", "rpd")
_PERIODS: Final = [p.value for p in BudgetPeriod]


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
    SETTINGS_BODY.check(body, prefix=param)
    patch: dict[str, Any] = {}
    for name, column in _SETTINGS_COLUMNS.items():
        if name in body:
            patch[column] = SETTINGS_BODY.read(body, name, param)
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
    DEFAULT_BUDGET_BODY.check(body, prefix=param)
    max_nanos = DEFAULT_BUDGET_BODY.read(body, "max_usd", param)
    return {"max_nanos": max_nanos, "period": DEFAULT_BUDGET_BODY.read(body, "period", param)}


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
    RATE_LIMITS_BODY.check(body, prefix=param)
    return {name: RATE_LIMITS_BODY.read(body, name, param) for name in _DIMENSIONS}


_RATE_LIMIT: Final = Integer(minimum=1, maximum=RATE_LIMIT_MAX)
RATE_LIMITS_BODY: Final = Body(*(Field(name, _RATE_LIMIT, nullable=True) for name in _DIMENSIONS))
DEFAULT_BUDGET_BODY: Final = Body(
    Field("max_usd", Usd(allow_zero=True), required=True),
    Field("period", Custom({"type": "string", "enum": _PERIODS}, lambda v, p: _period(v, p)), default="one_time"),
)


def _period(value: object, param: str) -> str:
    if not isinstance(value, str) or value not in BudgetPeriod.__members__.values():
        raise InvalidRequest(f"{param} must be one of one_time, daily, monthly.", param)
    return value


def _with_schema(body: Body, converter: Any) -> Custom:
    return Custom(body.schema(), converter)


SETTINGS_BODY: Final = Body(
    Field(
        "default_budget",
        _with_schema(DEFAULT_BUDGET_BODY, lambda v, p: _default_budget(v, p)),
        nullable=True,
        description="Every end user created afterwards gets an active budget with these values.",
    ),
    Field(
        "markup_percentage",
        Custom({"type": "number", "minimum": 0, "maximum": MARKUP_MAX}, lambda v, p: _markup_bps(v, p)),
        description="A percentage from 0 to 1000 with at most 2 decimals.",
    ),
    Field(
        "rate_limits",
        Custom({"anyOf": [RATE_LIMITS_BODY.schema(), {"type": "null"}]}, lambda v, p: _rate_limits(v, p)),
        description="Replaced whole; a dimension left out (or null for all) is unlimited.",
    ),
    Field("wallet_low_balance_threshold", Usd(allow_zero=True), nullable=True),
    Field("mcp_free_calls_per_month", Integer(minimum=0, maximum=MCP_FREE_CALLS_MAX)),
    Field("mcp_external_servers", Boolean()),
    Field(
        "mcp_redirect_origins",
        Custom(
            {"type": "array", "maxItems": MCP_ORIGINS_MAX, "items": {"type": "string", "maxLength": 300}},
            lambda v, p: _origins(v, p),
        ),
    ),
    description="Each key present replaces its stored value whole; absent keys are kept (SPEC §5.1).",
)
_SETTINGS_COLUMNS: Final = {
    "default_budget": "default_budget",
    "markup_percentage": "markup_bps",
    "rate_limits": "rate_limits",
    "wallet_low_balance_threshold": "wallet_low_balance_threshold_nanos",
    "mcp_free_calls_per_month": "mcp_free_calls_per_month",
    "mcp_external_servers": "mcp_external_servers",
    "mcp_redirect_origins": "mcp_redirect_origins",
}
_SETTINGS: Final = Custom(SETTINGS_BODY.schema(), settings_patch)
PLATFORM_BODY: Final = Body(
    Field("name", Text(100), required=True),
    Field("slug", Text(SLUG_MAX, pattern=PLATFORM_SLUG), nullable=True, description="Derived from name when absent."),
    Field("settings", _SETTINGS),
    read_only=_READ_ONLY,
)
PLATFORM_PATCH: Final = Body(Field("name", Text(100)), Field("settings", _SETTINGS), read_only=(*_READ_ONLY, "slug"))


class Platforms:
    def __init__(self, store: PlatformRepository) -> None:
        self._store = store

    async def create(self, body: Mapping[str, Any]) -> CreatedPlatform:
        PLATFORM_BODY.check(body)
        name = PLATFORM_BODY.read(body, "name")
        slug = PLATFORM_BODY.read(body, "slug")
        stored = PlatformSettings().to_stored()
        if "settings" in body:
            stored.update(PLATFORM_BODY.read(body, "settings"))
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
        PLATFORM_PATCH.check(body)
        name = PLATFORM_PATCH.read(body, "name")
        patch = PLATFORM_PATCH.read(body, "settings") if "settings" in body else {}
        updated = await self._store.update(platform_id, name=name, settings_patch=patch)
        if updated is None:
            raise NotFound("No platform with this id.")
        return updated

    async def delete(self, platform_id: str) -> None:
        if not await self._store.soft_delete(platform_id):
            raise NotFound("No platform with this id.")
