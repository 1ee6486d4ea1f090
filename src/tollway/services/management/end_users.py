"""End users as a platform manages them (SPEC §5.4): strict bodies, creation idempotent by ``external_id`` (a fresh
``sk-eu_`` key on every call), reads, PATCH, deletion and extra keys. Callers invalidate the authentication cache
after every write that changes who may authenticate (creation, keys, deactivation, deletion)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from tollway.domain import fields as f
from tollway.domain.bodies import Body, Boolean, Custom, Field, Metadata, Text
from tollway.domain.clock import utcnow
from tollway.domain.end_users import EndUserCreation
from tollway.domain.keys import END_USER_SCOPES, KeyKind, display_prefix, generate_raw_key, key_digest
from tollway.domain.ports.management import EndUserRepository
from tollway.domain.records import Record
from tollway.errors import InvalidRequest, NotFound
from tollway.services.management.credentials import NewKey, key_body

EXTERNAL_ID_MAX: Final = 255
DISPLAY_NAME_MAX: Final = 100
DEFAULT_END_USER_SCOPES: Final = ("inference",)
_READ_ONLY: Final = ("id", "platform_id", "created_at", "updated_at", "api_key", "budget")
_NO_END_USER: Final = "No end user with this id."


def new_end_user_key(body: Mapping[str, Any], *, now: datetime | None = None) -> NewKey:
    """Validates ``{name?, scopes?, expires_at?}`` and mints an end-user key (scopes a subset of ["inference"])."""
    END_USER_KEY_BODY.check(body)
    name = END_USER_KEY_BODY.read(body, "name")
    scopes = END_USER_KEY_BODY.read(body, "scopes")
    expires_at = END_USER_KEY_BODY.read(body, "expires_at")
    expiry = None if expires_at is None else f.as_future_timestamp(expires_at, "expires_at", now or utcnow())
    raw = generate_raw_key(KeyKind.END_USER)
    values = {
        "type": KeyKind.END_USER.value,
        "name": name,
        "key_prefix": display_prefix(raw),
        "key_hash": key_digest(raw),
        "scopes": scopes,
        "expires_at": expiry,
    }
    return NewKey(raw, values)


def _scopes(value: object, param: str = "scopes") -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest('scopes must be a non-empty array of strings: ["inference"].', "scopes")
    for index, scope in enumerate(value):
        if not isinstance(scope, str) or scope not in END_USER_SCOPES:
            param = f"scopes[{index}]"
            raise InvalidRequest(f"{param} must be inference: end-user keys carry no other scope.", param)
        if scope in value[:index]:
            param = f"scopes[{index}]"
            raise InvalidRequest(f"{param} repeats {scope!r}: name each scope once.", param)
    return list(DEFAULT_END_USER_SCOPES)


END_USER_KEY_BODY: Final = key_body(
    Custom(
        {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "enum": sorted(END_USER_SCOPES)},
        },
        _scopes,
    ),
    DEFAULT_END_USER_SCOPES,
)


def _metadata(value: object, param: str) -> dict[str, Any]:
    return {} if value is None else f.as_metadata(value, param)


_METADATA: Final = Field(
    "metadata", Custom({"anyOf": [Metadata().schema(), {"type": "null"}]}, _metadata), description="null: {}."
)
END_USER_BODY: Final = Body(
    Field("external_id", Text(EXTERNAL_ID_MAX), required=True, description="Unique per platform."),
    Field("display_name", Text(DISPLAY_NAME_MAX, min_len=0), nullable=True),
    _METADATA,
    read_only=(*_READ_ONLY, "is_active"),
    description="The same external_id again answers 200 with the existing end user and a fresh key.",
)
END_USER_PATCH: Final = Body(
    END_USER_BODY["display_name"],
    _METADATA,
    Field("is_active", Boolean()),
    read_only=_READ_ONLY,
    immutable=("external_id",),
)


class EndUsers:
    def __init__(self, store: EndUserRepository) -> None:
        self._store = store

    async def create(
        self, platform_id: str, body: Mapping[str, Any], now: datetime | None = None
    ) -> tuple[EndUserCreation, str]:
        """The creation (or the existing end user with ``created`` False) and the raw key, shown once."""
        END_USER_BODY.check(body)
        values = {name: END_USER_BODY.read(body, name) for name in ("external_id", "display_name", "metadata")}
        key = new_end_user_key({})
        created = await self._store.create_or_get(platform_id, values, key.values, now or utcnow())
        if created is None:
            raise NotFound("No platform with this id.")
        return created, key.raw_key

    async def get(self, platform_id: str, end_user_id: str) -> Record:
        found = await self._store.get(platform_id, end_user_id)
        if found is None:
            raise NotFound(_NO_END_USER)
        return found

    async def list_end_users(
        self, platform_id: str, external_id: str | None, offset: int, limit: int
    ) -> tuple[list[Record], int]:
        return await self._store.list_end_users(platform_id, external_id, offset, limit)

    async def update(
        self, platform_id: str, end_user_id: str, body: Mapping[str, Any], now: datetime | None = None
    ) -> Record:
        await self.get(platform_id, end_user_id)  # an unknown id is 404 before any body check (§2.3)
        END_USER_PATCH.check(body)
        values = {name: END_USER_PATCH.read(body, name) for name in END_USER_PATCH.fields if name in body}
        updated = await self._store.update(platform_id, end_user_id, values, now or utcnow())
        if updated is None:
            raise NotFound(_NO_END_USER)
        return updated

    async def delete(self, platform_id: str, end_user_id: str, now: datetime | None = None) -> None:
        if not await self._store.delete(platform_id, end_user_id, now or utcnow()):
            raise NotFound(_NO_END_USER)

    async def issue_key(self, platform_id: str, end_user_id: str, body: Mapping[str, Any]) -> tuple[Record, str]:
        await self.get(platform_id, end_user_id)
        key = new_end_user_key(body)
        row = await self._store.create_key(platform_id, end_user_id, key.values)
        if row is None:
            raise NotFound(_NO_END_USER)
        return row, key.raw_key
