"""``/v1/admin/models`` (SPEC §4.2, §19): priced model rows, and the import of LiteLLM's price catalogue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway_sdk._base_client import Call
from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, no_content, parser, seg
from tollway_sdk._types import NOT_GIVEN, USD, NotGiven, given, query, usd_fields
from tollway_sdk.types.admin import Model, PriceImport

_PATH = "/v1/admin/models"
_parse = parser(Model)
_PRICES = (
    "input_price_per_mtok",
    "output_price_per_mtok",
    "cached_input_price_per_mtok",
    "cache_write_price_per_mtok",
    "price_per_image",
    "price_per_request",
)


def _list(slug: str | NotGiven, provider_id: str | NotGiven) -> ListCall[Model]:
    return ListCall(_PATH, _parse, query(slug=slug, provider_id=provider_id))


def _import(
    catalog: Mapping[str, Any] | None, url: str | NotGiven, provider: str | NotGiven, dry_run: bool
) -> Call[PriceImport]:
    if (catalog is None) == isinstance(url, NotGiven):
        raise ValueError("pass either the catalogue object or url=, not both")
    payload = dict(catalog) if catalog is not None else {"url": url}
    params = query(provider=provider, dry_run=dry_run)
    return Call("POST", f"{_PATH}/import", parser(PriceImport), body=payload, query=params)


class AsyncModels(AsyncAPIResource):
    async def create(
        self,
        *,
        slug: str,
        provider_id: str,
        upstream_model: str,
        input_price_per_mtok: USD,
        output_price_per_mtok: USD,
        max_output_tokens: int,
        cached_input_price_per_mtok: USD | NotGiven | None = NOT_GIVEN,
        cache_write_price_per_mtok: USD | NotGiven | None = NOT_GIVEN,
        price_per_image: USD | NotGiven | None = NOT_GIVEN,
        price_per_request: USD | NotGiven | None = NOT_GIVEN,
        priority: int | NotGiven = NOT_GIVEN,
        min_output_tokens: int | NotGiven | None = NOT_GIVEN,
        context_window: int | NotGiven | None = NOT_GIVEN,
        is_active: bool | NotGiven = NOT_GIVEN,
    ) -> Model:
        """Add a model row: a public ``slug`` served by one provider at these prices (USD per million tokens)."""
        fields = given(locals())
        return await self._request(Call("POST", _PATH, _parse, body=usd_fields(fields, *_PRICES)))

    def list(
        self,
        *,
        slug: str | NotGiven = NOT_GIVEN,
        provider_id: str | NotGiven = NOT_GIVEN,
        limit: int | NotGiven = NOT_GIVEN,
        page: int = 1,
    ) -> AsyncPaginator[Model]:
        """Ordered by slug, then priority (the fallback order), then creation."""
        return self._list(_list(slug, provider_id), limit, page)

    async def retrieve(self, model_id: str) -> Model:
        return await self._request(Call("GET", f"{_PATH}/{seg(model_id)}", _parse))

    async def update(
        self,
        model_id: str,
        *,
        upstream_model: str | NotGiven = NOT_GIVEN,
        input_price_per_mtok: USD | NotGiven = NOT_GIVEN,
        output_price_per_mtok: USD | NotGiven = NOT_GIVEN,
        cached_input_price_per_mtok: USD | NotGiven | None = NOT_GIVEN,
        cache_write_price_per_mtok: USD | NotGiven | None = NOT_GIVEN,
        price_per_image: USD | NotGiven | None = NOT_GIVEN,
        price_per_request: USD | NotGiven | None = NOT_GIVEN,
        priority: int | NotGiven = NOT_GIVEN,
        min_output_tokens: int | NotGiven | None = NOT_GIVEN,
        max_output_tokens: int | NotGiven = NOT_GIVEN,
        context_window: int | NotGiven | None = NOT_GIVEN,
        is_active: bool | NotGiven = NOT_GIVEN,
    ) -> Model:
        """Change a row; new prices apply to requests admitted afterwards."""
        fields = given(locals(), "model_id")
        return await self._request(Call("PATCH", f"{_PATH}/{seg(model_id)}", _parse, body=usd_fields(fields, *_PRICES)))

    async def delete(self, model_id: str) -> None:
        await self._request(Call("DELETE", f"{_PATH}/{seg(model_id)}", no_content))

    async def import_prices(
        self,
        catalog: Mapping[str, Any] | None = None,
        *,
        url: str | NotGiven = NOT_GIVEN,
        provider: str | NotGiven = NOT_GIVEN,
        dry_run: bool = False,
    ) -> PriceImport:
        """Apply LiteLLM's ``model_prices_and_context_window.json`` (the object, or ``url=`` to fetch it) to the rows;
        ``provider`` (a slug) restricts it to one provider and lets it create rows; ``dry_run`` only reports."""
        return await self._request(_import(catalog, url, provider, dry_run))
