"""``GET /v1/models``: the slugs with at least one usable row on the caller's platform (SPEC §7.1)."""

from __future__ import annotations

from typing import Any

from tollway.domain.catalog import Candidate
from tollway.domain.ports.providers import Providers
from tollway.errors import ModelNotFound
from tollway.services.inference.routing import CandidateRouter


def _entry(slug: str, rows: tuple[Candidate, ...]) -> dict[str, Any]:
    return {
        "id": slug,
        "object": "model",
        "created": int(min(c.model.created_at for c in rows).timestamp()),
        "owned_by": rows[0].provider.slug,
    }


class ModelCatalogView:
    def __init__(self, router: CandidateRouter, adapters: Providers) -> None:
        self._router = router
        self._adapters = adapters

    async def _usable(self, platform_id: str) -> dict[str, tuple[Candidate, ...]]:
        catalog = await self._router.catalog(platform_id)
        usable = {}
        for slug, rows in catalog.by_slug.items():
            kept = tuple(c for c in rows if self._adapters.supports(c.provider.kind))
            if kept:
                usable[slug] = kept
        return usable

    async def list(self, platform_id: str) -> dict[str, Any]:
        usable = await self._usable(platform_id)
        return {"object": "list", "data": [_entry(slug, usable[slug]) for slug in sorted(usable)]}

    async def get(self, platform_id: str, slug: str) -> dict[str, Any]:
        rows = (await self._usable(platform_id)).get(slug)
        if not rows:
            raise ModelNotFound(f"The model '{slug}' does not exist or is not enabled.", "model")
        return _entry(slug, rows)
