"""Reading one platform's routable catalog: active model rows of active providers for which the platform has an
active LLM config (SPEC §5.3, §7.1). Management writes live in ``catalog_admin``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.domain.catalog import ModelRow, Provider, ProviderKind
from tollway.domain.clock import as_utc
from tollway.domain.pricing import Prices
from tollway.storage.sql.db import reader
from tollway.storage.sql.tables import llm_configs, models, platforms, providers


@dataclass(frozen=True, slots=True)
class SealedCandidate:
    model: ModelRow
    provider: Provider
    config_id: str
    sealed_key: bytes


_ROWS = (
    sa.select(
        models,
        providers.c.slug.label("p_slug"),
        providers.c.name.label("p_name"),
        providers.c.kind.label("p_kind"),
        providers.c.base_url.label("p_base_url"),
        providers.c.created_at.label("p_created_at"),
        providers.c.updated_at.label("p_updated_at"),
    )
    .select_from(models.join(providers, providers.c.id == models.c.provider_id))
    .where(models.c.is_active.is_(True), providers.c.is_active.is_(True))
)

_CONFIGS = (
    sa.select(llm_configs.c.id, llm_configs.c.provider_id, llm_configs.c.api_key_ciphertext)
    .where(llm_configs.c.platform_id == sa.bindparam("platform_id"), llm_configs.c.is_active.is_(True))
    # The default config wins, else the newest active one (SPEC §5.3).
    .order_by(llm_configs.c.is_default.desc(), llm_configs.c.created_at.desc(), llm_configs.c.id.desc())
)


class CatalogStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    async def platform_settings(self, platform_id: str) -> dict[str, Any] | None:
        """The stored settings JSON of a live platform (None when deleted or unknown)."""
        async with self._reader.connect() as conn:
            value = (
                await conn.execute(
                    sa.select(platforms.c.settings).where(
                        platforms.c.id == platform_id, platforms.c.deleted_at.is_(None)
                    )
                )
            ).scalar_one_or_none()
        return dict(value) if isinstance(value, dict) else None

    async def usable_rows(self, platform_id: str) -> list[SealedCandidate]:
        async with self._reader.connect() as conn:
            config_rows = (await conn.execute(_CONFIGS, {"platform_id": platform_id})).all()
            chosen: dict[str, tuple[str, bytes]] = {}
            for cfg in config_rows:
                chosen.setdefault(cfg.provider_id, (cfg.id, bytes(cfg.api_key_ciphertext)))
            if not chosen:
                return []
            rows = (await conn.execute(_ROWS.where(models.c.provider_id.in_(list(chosen))))).all()
        result = []
        for r in rows:
            provider = Provider(
                id=r.provider_id,
                slug=r.p_slug,
                name=r.p_name,
                kind=ProviderKind(r.p_kind),
                base_url=r.p_base_url,
                is_active=True,
                created_at=as_utc(r.p_created_at),
                updated_at=as_utc(r.p_updated_at),
            )
            model = ModelRow(
                id=r.id,
                slug=r.slug,
                provider_id=r.provider_id,
                upstream_model=r.upstream_model,
                prices=Prices(
                    r.input_price_nanos, r.output_price_nanos, r.cached_input_price_nanos, r.cache_write_price_nanos
                ),
                price_per_image_nanos=r.price_per_image_nanos,
                price_per_request_nanos=r.price_per_request_nanos,
                priority=r.priority,
                min_output_tokens=r.min_output_tokens,
                max_output_tokens=r.max_output_tokens,
                context_window=r.context_window,
                is_active=True,
                created_at=as_utc(r.created_at),
                updated_at=as_utc(r.updated_at),
            )
            config_id, sealed = chosen[r.provider_id]
            result.append(SealedCandidate(model, provider, config_id, sealed))
        return result
