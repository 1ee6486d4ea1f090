"""Operator use cases for the catalog (SPEC §4.1, §4.2): strict validation of provider and model-row bodies, the
base-URL rules, and the business rules that span rows (immutable fields, uniqueness, references)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from tollway.domain.catalog import DEFAULT_BASE_URLS, ModelRow, Provider, ProviderKind
from tollway.domain.conflicts import Duplicate, StillReferenced
from tollway.domain.ports.management import CatalogRepository
from tollway.errors import InvalidRequest, NotFound
from tollway.services.management import fields as f

PROVIDER_SLUG: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MODEL_SLUG: Final = re.compile(r"[A-Za-z0-9._:/-]{1,128}")
IMAGE_KINDS: Final = frozenset({ProviderKind.OPENAI, ProviderKind.OPENAI_COMPATIBLE, ProviderKind.ASI1})
_READ_ONLY: Final = ("id", "created_at", "updated_at")
_PROVIDER_FIELDS: Final = ("slug", "name", "kind", "base_url", "is_active")
_MODEL_FIELDS: Final = (
    "slug", "provider_id", "upstream_model", "input_price_per_mtok", "output_price_per_mtok",
    "cached_input_price_per_mtok", "cache_write_price_per_mtok", "price_per_image", "price_per_request", "priority",
    "min_output_tokens", "max_output_tokens", "context_window", "is_active",
)  # fmt: skip
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


def _kind(value: object) -> ProviderKind:
    allowed = ", ".join(k.value for k in ProviderKind)
    if not isinstance(value, str) or value not in ProviderKind.__members__.values():
        raise InvalidRequest(f"kind must be one of {allowed}.", "kind")
    return ProviderKind(value)


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
        f.check_keys(body, _PROVIDER_FIELDS, read_only=_READ_ONLY)
        slug = f.as_str(f.required(body, "slug"), "slug", max_len=64, pattern=PROVIDER_SLUG)
        name = f.as_str(f.required(body, "name"), "name", max_len=100)
        kind = _kind(f.required(body, "kind"))
        raw_url = body.get("base_url")
        base_url = _default_base_url(kind) if raw_url is None else normalise_base_url(raw_url)
        is_active = f.as_bool(body.get("is_active", True), "is_active")
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
        if kind is not None and kind not in ProviderKind.__members__.values():
            allowed = ", ".join(k.value for k in ProviderKind)
            raise InvalidRequest(f"kind must be one of {allowed}.", "kind")
        return await self._store.list_providers(kind, offset, limit)

    async def update_provider(self, provider_id: str, body: Mapping[str, Any]) -> Provider:
        current = await self.get_provider(provider_id)
        f.check_keys(body, ("name", "base_url", "is_active"), read_only=_READ_ONLY, immutable=("slug", "kind"))
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = f.as_str(body["name"], "name", max_len=100)
        if "base_url" in body:
            # null restores the kind's default (openai_compatible has none, so it stays required).
            raw = body["base_url"]
            values["base_url"] = _default_base_url(current.kind) if raw is None else normalise_base_url(raw)
        if "is_active" in body:
            values["is_active"] = f.as_bool(body["is_active"], "is_active")
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
        f.check_keys(body, _MODEL_FIELDS, read_only=_READ_ONLY)
        slug = f.as_str(f.required(body, "slug"), "slug", max_len=128, pattern=MODEL_SLUG)
        raw_provider = f.as_str(f.required(body, "provider_id"), "provider_id", max_len=64)
        provider = await self._store.get_provider(raw_provider)
        if provider is None:
            raise InvalidRequest("provider_id does not name an existing provider.", "provider_id")
        values: dict[str, Any] = {
            "slug": slug,
            "provider_id": provider.id,
            "upstream_model": f.as_str(f.required(body, "upstream_model"), "upstream_model", max_len=256),
            "input_price_nanos": f.as_usd(
                f.required(body, "input_price_per_mtok"), "input_price_per_mtok", allow_zero=True
            ),
            "output_price_nanos": f.as_usd(
                f.required(body, "output_price_per_mtok"), "output_price_per_mtok", allow_zero=True
            ),
            **{_MODEL_PRICES[name]: f.as_opt_usd(body.get(name), name, allow_zero=True) for name in _NULLABLE_PRICES},
            "price_per_image_nanos": self._image_price(body.get("price_per_image"), provider),
            "priority": f.as_int(body.get("priority", 100), "priority", minimum=0),
            "min_output_tokens": f.as_opt_int(body.get("min_output_tokens"), "min_output_tokens", minimum=1),
            "max_output_tokens": f.as_int(f.required(body, "max_output_tokens"), "max_output_tokens", minimum=1),
            "context_window": f.as_opt_int(body.get("context_window"), "context_window", minimum=1),
            "is_active": f.as_bool(body.get("is_active", True), "is_active"),
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
        writable = [name for name in _MODEL_FIELDS if name not in ("slug", "provider_id")]
        f.check_keys(body, writable, read_only=_READ_ONLY, immutable=("slug", "provider_id"))
        values: dict[str, Any] = {}
        for name, column in _MODEL_PRICES.items():
            if name in body and name != "price_per_image":
                convert = f.as_opt_usd if name in _NULLABLE_PRICES else f.as_usd
                values[column] = convert(body[name], name, allow_zero=True)
        if "price_per_image" in body:
            provider = await self._store.get_provider(current.provider_id)
            assert provider is not None  # a provider with model rows cannot be deleted
            values["price_per_image_nanos"] = self._image_price(body["price_per_image"], provider)
        if "upstream_model" in body:
            values["upstream_model"] = f.as_str(body["upstream_model"], "upstream_model", max_len=256)
        if "priority" in body:
            values["priority"] = f.as_int(body["priority"], "priority", minimum=0)
        for name in ("min_output_tokens", "context_window"):
            if name in body:
                values[name] = f.as_opt_int(body[name], name, minimum=1)
        if "max_output_tokens" in body:
            values["max_output_tokens"] = f.as_int(body["max_output_tokens"], "max_output_tokens", minimum=1)
        if "is_active" in body:
            values["is_active"] = f.as_bool(body["is_active"], "is_active")
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
        return f.as_usd(value, "price_per_image", allow_zero=True)


def _check_output_bounds(values: Mapping[str, Any], *, blame_max: bool) -> None:
    minimum = values["min_output_tokens"] or 1
    if values["max_output_tokens"] < minimum:
        param = "max_output_tokens" if blame_max else "min_output_tokens"
        raise InvalidRequest(
            f"max_output_tokens must be at least min_output_tokens ({minimum}); "
            f"got max_output_tokens {values['max_output_tokens']}.",
            param,
        )
