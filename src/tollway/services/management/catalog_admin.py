"""Operator use cases for the catalog (SPEC §4.1, §4.2): strict validation of provider and model-row bodies, the
base-URL rules, and the business rules that span rows (immutable fields, uniqueness, references)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from tollway.domain import fields as f
from tollway.domain.bodies import Body, Boolean, Choice, Custom, Field, Integer, Text, Usd
from tollway.domain.catalog import DEFAULT_BASE_URLS, ModelRow, Provider, ProviderKind
from tollway.domain.conflicts import Duplicate, StillReferenced
from tollway.domain.ports.management import CatalogRepository
from tollway.errors import InvalidRequest, NotFound

PROVIDER_SLUG: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MODEL_SLUG: Final = re.compile(r"[A-Za-z0-9._:/-]{1,128}")
IMAGE_KINDS: Final = frozenset({ProviderKind.OPENAI, ProviderKind.OPENAI_COMPATIBLE, ProviderKind.ASI1})
_READ_ONLY: Final = ("id", "created_at", "updated_at")
_MODEL_PRICES: Final = {
    "input_price_per_mtok": "input_price_nanos",
    "output_price_per_mtok": "output_price_nanos",
    "cached_input_price_per_mtok": "cached_input_price_nanos",
    "cache_write_price_per_mtok": "cache_write_price_nanos",
    "price_per_image": "price_per_image_nanos",
    "price_per_request": "price_per_request_nanos",
}
_NULLABLE_PRICES: Final = frozenset({"cached_input_price_per_mtok", "cache_write_price_per_mtok", "price_per_request"})


def normalise_base_url(value: object, param: str = "base_url") -> str:
    """An absolute http(s) URL without query, fragment or credentials; trailing ``/`` dropped (SPEC §4.1)."""
    text = f.as_str(value, param, max_len=2048)
    rule = "must be an absolute http or https URL without query, fragment or credentials"
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise InvalidRequest(f"{param} {rule}.", param) from None
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or "?" in text
        or "#" in text
        or "@" in parts.netloc
        or any(ch.isspace() for ch in text)
    ):
        raise InvalidRequest(f"{param} {rule}.", param)
    return parts.scheme.lower() + text[len(parts.scheme) :].rstrip("/")


_KINDS: Final = Choice(tuple(k.value for k in ProviderKind))
BASE_URL_SCHEMA: Final = {"type": "string", "format": "uri", "maxLength": 2048, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"}
_PRICE: Final = Usd(allow_zero=True)
_TOKENS: Final = Integer(minimum=1)

PROVIDER_BODY: Final = Body(
    Field("slug", Text(64, pattern=PROVIDER_SLUG), required=True),
    Field("name", Text(100), required=True),
    Field("kind", _KINDS, required=True),
    Field(
        "base_url",
        Custom(BASE_URL_SCHEMA, normalise_base_url),
        nullable=True,
        description="Required for openai_compatible; absent or null takes the kind's default (SPEC §4.1).",
    ),
    Field("is_active", Boolean(), default=True),
    read_only=_READ_ONLY,
)
PROVIDER_PATCH: Final = PROVIDER_BODY.updating(immutable=("slug", "kind"))

MODEL_BODY: Final = Body(
    Field("slug", Text(128, pattern=MODEL_SLUG), required=True, description="The public model name."),
    Field("provider_id", Text(64, format="uuid"), required=True),
    Field("upstream_model", Text(256), required=True),
    Field("input_price_per_mtok", _PRICE, required=True),
    Field("output_price_per_mtok", _PRICE, required=True),
    Field("cached_input_price_per_mtok", _PRICE, nullable=True, description="null: the input price."),
    Field("cache_write_price_per_mtok", _PRICE, nullable=True, description="null: the input price."),
    Field(
        "price_per_image",
        _PRICE,
        nullable=True,
        description="Only on rows of providers of kind openai, openai_compatible or asi1.",
    ),
    Field("price_per_request", _PRICE, nullable=True),
    Field("priority", Integer(minimum=0), default=100, description="Lower is preferred."),
    Field("min_output_tokens", _TOKENS, nullable=True),
    Field("max_output_tokens", _TOKENS, required=True, description="At least min_output_tokens."),
    Field("context_window", _TOKENS, nullable=True),
    Field("is_active", Boolean(), default=True),
    read_only=_READ_ONLY,
)
MODEL_PATCH: Final = MODEL_BODY.updating(immutable=("slug", "provider_id"))


def _default_base_url(kind: ProviderKind) -> str:
    default = DEFAULT_BASE_URLS[kind]
    if default is None:
        raise InvalidRequest(f"base_url is required for providers of kind {kind.value}.", "base_url")
    return default


class CatalogAdmin:
    def __init__(self, store: CatalogRepository) -> None:
        self._store = store

    # -- providers ---------------------------------------------------------------------------------------------

    async def create_provider(self, body: Mapping[str, Any]) -> Provider:
        spec = PROVIDER_BODY
        spec.check(body)
        slug = spec.read(body, "slug")
        name = spec.read(body, "name")
        kind = ProviderKind(spec.read(body, "kind"))
        base_url = spec.read(body, "base_url")
        if base_url is None:
            base_url = _default_base_url(kind)
        is_active = spec.read(body, "is_active")
        values = {"slug": slug, "name": name, "kind": kind.value, "base_url": base_url, "is_active": is_active}
        try:
            return await self._store.insert_provider(values)
        except Duplicate:
            raise InvalidRequest(f"A provider with slug '{slug}' already exists.", "slug") from None

    async def get_provider(self, provider_id: str) -> Provider:
        provider = await self._store.get_provider(provider_id)
        if provider is None:
            raise NotFound("No provider with this id.")
        return provider

    async def list_providers(self, kind: str | None, offset: int, limit: int) -> tuple[list[Provider], int]:
        if kind is not None:
            _KINDS.convert(kind, "kind")
        return await self._store.list_providers(kind, offset, limit)

    async def update_provider(self, provider_id: str, body: Mapping[str, Any]) -> Provider:
        current = await self.get_provider(provider_id)
        spec = PROVIDER_PATCH
        spec.check(body)
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = spec.read(body, "name")
        if "base_url" in body:
            # null restores the kind's default (openai_compatible has none, so it stays required).
            base_url = spec.read(body, "base_url")
            values["base_url"] = _default_base_url(current.kind) if base_url is None else base_url
        if "is_active" in body:
            values["is_active"] = spec.read(body, "is_active")
        updated = await self._store.update_provider(provider_id, values)
        if updated is None:
            raise NotFound("No provider with this id.")
        return updated

    async def delete_provider(self, provider_id: str) -> None:
        try:
            deleted = await self._store.delete_provider(provider_id)
        except StillReferenced:
            raise InvalidRequest(
                "This provider still has model rows; delete them before deleting the provider.", None
            ) from None
        if not deleted:
            raise NotFound("No provider with this id.")

    # -- model rows --------------------------------------------------------------------------------------------

    async def create_model(self, body: Mapping[str, Any]) -> ModelRow:
        spec = MODEL_BODY
        spec.check(body)
        slug = spec.read(body, "slug")
        provider = await self._store.get_provider(spec.read(body, "provider_id"))
        if provider is None:
            raise InvalidRequest("provider_id does not name an existing provider.", "provider_id")
        values: dict[str, Any] = {
            "slug": slug,
            "provider_id": provider.id,
            "upstream_model": spec.read(body, "upstream_model"),
            "input_price_nanos": spec.read(body, "input_price_per_mtok"),
            "output_price_nanos": spec.read(body, "output_price_per_mtok"),
            **{_MODEL_PRICES[name]: spec.read(body, name) for name in _NULLABLE_PRICES},
            "price_per_image_nanos": self._image_price(body.get("price_per_image"), provider),
            "priority": spec.read(body, "priority"),
            "min_output_tokens": spec.read(body, "min_output_tokens"),
            "max_output_tokens": spec.read(body, "max_output_tokens"),
            "context_window": spec.read(body, "context_window"),
            "is_active": spec.read(body, "is_active"),
        }
        _check_output_bounds(values, blame_max=True)
        try:
            return await self._store.insert_model(values)
        except Duplicate:
            raise InvalidRequest(f"A model row with slug '{slug}' already exists for this provider.", "slug") from None

    async def get_model(self, model_id: str) -> ModelRow:
        model = await self._store.get_model(model_id)
        if model is None:
            raise NotFound("No model row with this id.")
        return model

    async def list_models(
        self, slug: str | None, provider_id: str | None, offset: int, limit: int
    ) -> tuple[list[ModelRow], int]:
        return await self._store.list_models(slug, provider_id, offset, limit)

    async def update_model(self, model_id: str, body: Mapping[str, Any]) -> ModelRow:
        current = await self.get_model(model_id)
        spec = MODEL_PATCH
        spec.check(body)
        values: dict[str, Any] = {}
        for name, column in _MODEL_PRICES.items():
            if name in body and name != "price_per_image":
                values[column] = spec.read(body, name)
        if "price_per_image" in body:
            provider = await self._store.get_provider(current.provider_id)
            assert provider is not None  # a provider with model rows cannot be deleted
            values["price_per_image_nanos"] = self._image_price(body["price_per_image"], provider)
        for name in ("upstream_model", "priority", "min_output_tokens", "max_output_tokens", "context_window"):
            if name in body:
                values[name] = spec.read(body, name)
        if "is_active" in body:
            values["is_active"] = spec.read(body, "is_active")
        merged = {
            "min_output_tokens": values.get("min_output_tokens", current.min_output_tokens),
            "max_output_tokens": values.get("max_output_tokens", current.max_output_tokens),
        }
        _check_output_bounds(merged, blame_max="max_output_tokens" in body)
        updated = await self._store.update_model(model_id, values)
        if updated is None:
            raise NotFound("No model row with this id.")
        return updated

    async def delete_model(self, model_id: str) -> None:
        if not await self._store.delete_model(model_id):
            raise NotFound("No model row with this id.")

    @staticmethod
    def _image_price(value: object, provider: Provider) -> int | None:
        if value is None:
            return None
        if provider.kind not in IMAGE_KINDS:
            raise InvalidRequest(
                "price_per_image can be set only on rows of providers of kind openai, openai_compatible or asi1.",
                "price_per_image",
            )
        return int(MODEL_BODY["price_per_image"].convert(value, "price_per_image"))


def _check_output_bounds(values: Mapping[str, Any], *, blame_max: bool) -> None:
    minimum = values["min_output_tokens"] or 1
    if values["max_output_tokens"] < minimum:
        param = "max_output_tokens" if blame_max else "min_output_tokens"
        raise InvalidRequest(
            f"max_output_tokens must be at least min_output_tokens ({minimum}); "
            f"got max_output_tokens {values['max_output_tokens']}.",
            param,
        )
