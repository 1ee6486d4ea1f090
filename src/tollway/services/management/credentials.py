"""A platform's credentials: its API keys (SPEC §2.2, §5.2) and its sealed provider keys, the LLM configs (§5.3).
Raw keys exist only in the response that creates them; provider keys are sealed before they reach storage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from tollway.domain import fields as f
from tollway.domain.bodies import Body, Boolean, Custom, Field, Text, checked_elsewhere
from tollway.domain.clock import utcnow
from tollway.domain.conflicts import ProviderUnavailable
from tollway.domain.keys import PLATFORM_SCOPES, KeyKind, display_prefix, generate_raw_key, key_digest
from tollway.domain.ports.management import ApiKeyRepository, LlmConfigRepository
from tollway.domain.records import Record
from tollway.domain.sealing import Sealer
from tollway.errors import InvalidRequest, NotFound

DEFAULT_PLATFORM_SCOPES: Final = ("inference", "manage")
_KEY_READ_ONLY: Final = (
    "id", "platform_id", "end_user_id", "type", "key_prefix", "is_active", "last_used_at", "revoked_at",
    "created_at", "raw_key",
)  # fmt: skip
_CONFIG_READ_ONLY: Final = ("id", "platform_id", "provider_slug", "created_at", "updated_at")
EXPIRES_AT: Final = Field(
    "expires_at",
    checked_elsewhere({"type": "string", "format": "date-time", "description": "RFC 3339, in the future."}),
    nullable=True,
)


def key_body(scopes: Custom, default_scopes: tuple[str, ...]) -> Body:
    """``{name?, scopes?, expires_at?}`` of a new API key; ``expires_at`` is judged against the clock by the caller."""
    return Body(
        Field("name", Text(100, min_len=0), nullable=True),
        Field("scopes", scopes, default=list(default_scopes)),
        EXPIRES_AT,
        read_only=_KEY_READ_ONLY,
    )


def _api_key_value(value: object, param: str) -> str:
    # Checked without echoing the value: error messages never carry the key (SPEC §15).
    if not isinstance(value, str) or not 1 <= len(value) <= 4096 or not value.isprintable():
        raise InvalidRequest("api_key must be a string of 1 to 4096 printable characters.", "api_key")
    return value


_PROVIDER_ID: Final = Field("provider_id", Text(64, format="uuid"), required=True, description="An active provider.")
LLM_CONFIG_BODY: Final = Body(
    _PROVIDER_ID,
    Field(
        "api_key",
        Custom({"type": "string", "minLength": 1, "maxLength": 4096, "writeOnly": True}, _api_key_value),
        required=True,
        description="The provider key, sealed at rest and never returned.",
    ),
    Field("is_default", Boolean(), default=False),
    Field("is_active", Boolean(), default=True),
    read_only=_CONFIG_READ_ONLY,
)
LLM_CONFIG_PATCH: Final = LLM_CONFIG_BODY.updating()


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key about to be stored: the raw key (shown once) and the row values (digest, never the key)."""

    raw_key: str
    values: dict[str, Any]


def new_platform_key(body: Mapping[str, Any], *, now: datetime | None = None) -> NewKey:
    """Validates ``{name?, scopes?, expires_at?}`` and mints a platform key."""
    PLATFORM_KEY_BODY.check(body)
    name = PLATFORM_KEY_BODY.read(body, "name")
    scopes = PLATFORM_KEY_BODY.read(body, "scopes")
    expires_at = PLATFORM_KEY_BODY.read(body, "expires_at")
    expiry = None if expires_at is None else f.as_future_timestamp(expires_at, "expires_at", now or utcnow())
    raw = generate_raw_key(KeyKind.PLATFORM)
    values = {
        "end_user_id": None,
        "type": KeyKind.PLATFORM.value,
        "name": name,
        "key_prefix": display_prefix(raw),
        "key_hash": key_digest(raw),
        "scopes": scopes,
        "expires_at": expiry,
    }
    return NewKey(raw, values)


def _scopes(value: object, param: str = "scopes") -> list[str]:
    if not isinstance(value, list):
        raise InvalidRequest('scopes must be an array of strings such as ["inference", "manage"].', "scopes")
    if not value:
        raise InvalidRequest("scopes must name at least one of inference, manage.", "scopes")
    chosen: list[str] = []
    for index, scope in enumerate(value):
        if not isinstance(scope, str) or scope not in PLATFORM_SCOPES:
            param = f"scopes[{index}]"
            raise InvalidRequest(f"{param} must be one of inference, manage.", param)
        if scope in chosen:
            param = f"scopes[{index}]"
            raise InvalidRequest(f"{param} repeats {scope!r}: name each scope once.", param)
        chosen.append(scope)
    return chosen


PLATFORM_KEY_BODY: Final = key_body(
    Custom(
        {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "enum": sorted(PLATFORM_SCOPES)},
        },
        _scopes,
    ),
    DEFAULT_PLATFORM_SCOPES,
)


class PlatformKeys:
    def __init__(self, store: ApiKeyRepository) -> None:
        self._store = store

    async def issue(self, platform_id: str, body: Mapping[str, Any]) -> tuple[Record, str]:
        """A new platform key for a live platform: the stored row and the raw key."""
        key = new_platform_key(body)
        row = await self._store.create({**key.values, "platform_id": platform_id})
        if row is None:
            raise NotFound("No platform with this id.")
        return row, key.raw_key

    async def list_keys(
        self, platform_id: str, key_type: str | None, end_user_id: str | None, offset: int, limit: int
    ) -> tuple[list[Record], int]:
        if key_type is None:
            key_type = "end_user" if end_user_id is not None else "platform"
        if key_type not in ("platform", "end_user"):
            raise InvalidRequest("type must be platform or end_user.", "type")
        return await self._store.list_keys(platform_id, key_type, end_user_id, offset, limit)

    async def revoke(self, platform_id: str, key_id: str) -> None:
        if not await self._store.revoke(platform_id, key_id, utcnow()):
            raise NotFound("No API key with this id.")


class LlmConfigs:
    def __init__(self, store: LlmConfigRepository, sealer: Sealer) -> None:
        self._store = store
        self._sealer = sealer

    async def create(self, platform_id: str, body: Mapping[str, Any]) -> Record:
        spec = LLM_CONFIG_BODY
        spec.check(body)
        provider_id = spec.read(body, "provider_id")
        values = {
            "provider_id": provider_id,
            "api_key_ciphertext": self._seal(spec.read(body, "api_key"), platform_id),
            "is_default": spec.read(body, "is_default"),
            "is_active": spec.read(body, "is_active"),
        }
        try:
            return await self._store.create(platform_id, values)
        except ProviderUnavailable:
            raise _provider_unavailable() from None

    async def get(self, platform_id: str, config_id: str) -> Record:
        row = await self._store.get(platform_id, config_id)
        if row is None:
            raise NotFound("No LLM config with this id.")
        return row

    async def list_configs(
        self, platform_id: str, provider_id: str | None, offset: int, limit: int
    ) -> tuple[list[Record], int]:
        return await self._store.list_configs(platform_id, provider_id, offset, limit)

    async def update(self, platform_id: str, config_id: str, body: Mapping[str, Any]) -> Record:
        await self.get(platform_id, config_id)
        spec = LLM_CONFIG_PATCH
        spec.check(body)
        values: dict[str, Any] = {}
        if "provider_id" in body:
            values["provider_id"] = spec.read(body, "provider_id")
        if "api_key" in body:
            values["api_key_ciphertext"] = self._seal(spec.read(body, "api_key"), platform_id)
        for name in ("is_default", "is_active"):
            if name in body:
                values[name] = spec.read(body, name)
        try:
            row = await self._store.update(platform_id, config_id, values)
        except ProviderUnavailable:
            raise _provider_unavailable() from None
        if row is None:
            raise NotFound("No LLM config with this id.")
        return row

    async def delete(self, platform_id: str, config_id: str) -> None:
        if not await self._store.delete(platform_id, config_id):
            raise NotFound("No LLM config with this id.")

    def _seal(self, value: str, platform_id: str) -> bytes:
        return self._sealer.seal(value, platform_id)


def _provider_unavailable() -> InvalidRequest:
    return InvalidRequest("provider_id does not name an active provider.", "provider_id")
