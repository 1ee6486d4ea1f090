"""Candidate lists per (platform, slug), cached for under a second per instance (SPEC §7.1, §8 steps 3b-4).

A candidate whose sealed provider key does not open for its platform is skipped and logged, never used (§5.3).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tollway.domain.catalog import Candidate
from tollway.domain.platform_settings import PlatformSettings
from tollway.domain.ports.inference import CatalogSource
from tollway.domain.sealing import Sealer, SealError
from tollway.services.freshness import RefreshAhead

log = logging.getLogger("tollway.routing")

CACHE_S = 0.9
REFRESH_AFTER_S = 0.5  # reloaded in the background from here on (services/freshness.py)


@dataclass(frozen=True, slots=True)
class PlatformCatalog:
    by_slug: dict[str, tuple[Candidate, ...]]
    settings: PlatformSettings

    def candidates(self, slug: str) -> tuple[Candidate, ...]:
        return self.by_slug.get(slug, ())


class CandidateRouter:
    def __init__(self, source: CatalogSource, sealer: Sealer) -> None:
        self._source = source
        self._sealer = sealer
        self._cache: RefreshAhead[str, PlatformCatalog] = RefreshAhead(
            self._build, max_age_s=CACHE_S, refresh_after_s=REFRESH_AFTER_S
        )

    def invalidate(self) -> None:
        self._cache.invalidate()

    async def catalog(self, platform_id: str) -> PlatformCatalog:
        return await self._cache.get(platform_id)

    async def _build(self, platform_id: str) -> PlatformCatalog:
        grouped: dict[str, list[Candidate]] = {}
        for row in await self._source.usable_rows(platform_id):
            try:
                api_key = self._sealer.open(row.sealed_key, platform_id)
            except SealError:
                log.error(
                    "llm config %s does not decrypt for platform %s; candidate skipped",
                    row.config_id,
                    platform_id,
                )
                continue
            grouped.setdefault(row.model.slug, []).append(Candidate(row.model, row.provider, api_key))
        ordered = {
            slug: tuple(sorted(rows, key=lambda c: (c.model.priority, c.model.created_at, c.model.id)))
            for slug, rows in grouped.items()
        }
        return PlatformCatalog(ordered, PlatformSettings.from_stored(await self._source.platform_settings(platform_id)))
