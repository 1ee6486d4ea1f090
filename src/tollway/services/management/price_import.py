"""Importing LiteLLM's price catalogue into the model rows (SPEC §19): ``tollway prices import`` and
``POST /v1/admin/models/import``. The plan is pure (``domain/price_catalog.py``); here it is computed from the
current rows and, unless it is a dry run, applied exactly as planned in one transaction, or not at all."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from tollway.domain.catalog import Provider
from tollway.domain.ports.management import CatalogRepository, CatalogSource
from tollway.domain.price_catalog import CatalogError, ImportPlan, parse_catalog, plan_import
from tollway.errors import InvalidRequest

# Admin API field -> model-row column.
COLUMNS: Final = {
    "input_price_per_mtok": "input_price_nanos",
    "output_price_per_mtok": "output_price_nanos",
    "cached_input_price_per_mtok": "cached_input_price_nanos",
    "cache_write_price_per_mtok": "cache_write_price_nanos",
    "price_per_image": "price_per_image_nanos",
    "price_per_request": "price_per_request_nanos",
    "context_window": "context_window",
    "max_output_tokens": "max_output_tokens",
}


@dataclass(frozen=True, slots=True)
class ImportResult:
    plan: ImportPlan
    provider: Provider | None  # the selected provider; None: every provider
    dry_run: bool
    applied: bool


class ImportBlocked(InvalidRequest):
    """Malformed entries would change rows: nothing was applied. Carries the plan, so that it can be reported."""

    def __init__(self, result: ImportResult) -> None:
        first = result.plan.malformed[0]
        count = len(result.plan.malformed)
        message = (
            f"The catalogue has {count} malformed entr{'y' if count == 1 else 'ies'} for the selected rows; "
            f"nothing was applied. First: {first.param}: {first.reason}."
        )
        super().__init__(message, first.param)
        self.result = result


class PriceImport:
    def __init__(self, store: CatalogRepository, source: CatalogSource) -> None:
        self._store = store
        self._source = source

    async def catalog_of(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """The admin route's body: the catalogue object itself, or ``{"url": "https://..."}`` to fetch it."""
        url = body.get("url")
        if len(body) == 1 and isinstance(url, str):
            return await self.fetch(url)
        return body

    async def fetch(self, url: str) -> dict[str, Any]:
        """The catalogue at an http(s) URL (§11.5's rules; size and time limited)."""
        raw = await self._source.fetch(url)
        try:
            return parse_catalog(raw)
        except CatalogError as exc:
            raise InvalidRequest(f"url: {exc}", "url") from None

    async def run(self, catalog: Mapping[str, Any], provider_slug: str | None, *, dry_run: bool) -> ImportResult:
        """Plan the import against the current rows; unless ``dry_run``, apply exactly that plan in one transaction.
        Raises ``ImportBlocked`` (nothing applied) when an entry that would change a row is malformed."""
        providers, rows = await self._store.catalog_rows()
        selected: Provider | None = None
        if provider_slug is not None:
            selected = next((p for p in providers if p.slug == provider_slug), None)
            if selected is None:
                raise InvalidRequest(f"No provider has the slug '{provider_slug[:64]}'.", "provider")
        plan = plan_import(catalog, [selected] if selected else providers, rows, create=selected is not None)
        result = ImportResult(plan, selected, dry_run, applied=False)
        if dry_run:
            return result
        if not plan.applicable:
            raise ImportBlocked(result)
        updates = [
            (u.row.id, {COLUMNS[name]: (change.old, change.new) for name, change in u.changes.items()})
            for u in plan.updates
        ]
        inserts = [
            {
                "slug": c.slug,
                "provider_id": c.provider.id,
                "upstream_model": c.slug,
                "input_price_nanos": c.values["input_price_per_mtok"],
                "output_price_nanos": c.values["output_price_per_mtok"],
                "cached_input_price_nanos": c.values.get("cached_input_price_per_mtok"),
                "cache_write_price_nanos": c.values.get("cache_write_price_per_mtok"),
                "price_per_image_nanos": c.values.get("price_per_image"),
                "price_per_request_nanos": c.values.get("price_per_request"),
                "priority": 100,
                "min_output_tokens": None,
                "max_output_tokens": c.values["max_output_tokens"],
                "context_window": c.values.get("context_window"),
                "is_active": False,  # an import never starts serving a model by itself
            }
            for c in plan.creates
        ]
        if (updates or inserts) and not await self._store.apply_model_changes(updates, inserts):
            raise InvalidRequest(
                "The model rows changed while the import was being planned; nothing was applied. Run it again.", None
            )
        return ImportResult(plan, selected, dry_run, applied=bool(updates or inserts))
