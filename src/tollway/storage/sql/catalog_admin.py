"""Operator writes and reads of the catalog: providers and priced model rows (SPEC §4.1, §4.2).
Routing reads live in ``catalog``; callers invalidate routing caches after every write here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.domain.catalog import ModelRow, Provider, ProviderKind
from tollway.domain.clock import as_utc, utcnow
from tollway.domain.conflicts import Duplicate, StillReferenced
from tollway.domain.ids import new_id
from tollway.domain.pricing import Prices
from tollway.storage.sql.paging import fetch_page
from tollway.storage.sql.tables import llm_configs, models, providers


def provider_from_row(row: Mapping[str, Any]) -> Provider:
    return Provider(
        id=row["id"],
        slug=row["slug"],
        name=row["name"],
        kind=ProviderKind(row["kind"]),
        base_url=row["base_url"],
        is_active=bool(row["is_active"]),
        created_at=as_utc(row["created_at"]),
        updated_at=as_utc(row["updated_at"]),
    )


def model_from_row(row: Mapping[str, Any]) -> ModelRow:
    return ModelRow(
        id=row["id"],
        slug=row["slug"],
        provider_id=row["provider_id"],
        upstream_model=row["upstream_model"],
        prices=Prices(
            row["input_price_nanos"],
            row["output_price_nanos"],
            row["cached_input_price_nanos"],
            row["cache_write_price_nanos"],
        ),
        price_per_image_nanos=row["price_per_image_nanos"],
        price_per_request_nanos=row["price_per_request_nanos"],
        priority=row["priority"],
        min_output_tokens=row["min_output_tokens"],
        max_output_tokens=row["max_output_tokens"],
        context_window=row["context_window"],
        is_active=bool(row["is_active"]),
        created_at=as_utc(row["created_at"]),
        updated_at=as_utc(row["updated_at"]),
    )


class CatalogAdminStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- providers ---------------------------------------------------------------------------------------------

    async def insert_provider(self, values: Mapping[str, Any]) -> Provider:
        now = utcnow()
        row = {**values, "id": new_id(), "created_at": now, "updated_at": now}
        try:
            async with self._engine.begin() as conn:
                await conn.execute(sa.insert(providers).values(row))
        except sa.exc.IntegrityError as exc:
            raise Duplicate from exc
        return provider_from_row(row)

    async def get_provider(self, provider_id: str) -> Provider | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(providers).where(providers.c.id == provider_id))).first()
        return None if row is None else provider_from_row(dict(row._mapping))

    async def list_providers(self, kind: str | None, offset: int, limit: int) -> tuple[list[Provider], int]:
        query = sa.select(providers)
        if kind is not None:
            query = query.where(providers.c.kind == kind)
        order = [providers.c.created_at.desc(), providers.c.id.desc()]
        async with self._engine.connect() as conn:
            rows, total = await fetch_page(conn, query, order, offset, limit)
        return [provider_from_row(r) for r in rows], total

    async def update_provider(self, provider_id: str, values: Mapping[str, Any]) -> Provider | None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(providers).where(providers.c.id == provider_id).values({**values, "updated_at": utcnow()})
            )
            row = (await conn.execute(sa.select(providers).where(providers.c.id == provider_id))).first()
        return None if row is None else provider_from_row(dict(row._mapping))

    async def delete_provider(self, provider_id: str) -> bool:
        """Removes the provider and every platform's LLM config for it; refused while model rows reference it."""
        try:
            async with self._engine.begin() as conn:
                referenced = (
                    await conn.execute(sa.select(models.c.id).where(models.c.provider_id == provider_id).limit(1))
                ).first()
                if referenced is not None:
                    raise StillReferenced
                await conn.execute(sa.delete(llm_configs).where(llm_configs.c.provider_id == provider_id))
                result = await conn.execute(sa.delete(providers).where(providers.c.id == provider_id))
        except sa.exc.IntegrityError as exc:  # a model row inserted concurrently
            raise StillReferenced from exc
        return result.rowcount > 0

    # -- model rows --------------------------------------------------------------------------------------------

    async def insert_model(self, values: Mapping[str, Any]) -> ModelRow:
        now = utcnow()
        row = {**values, "id": new_id(), "created_at": now, "updated_at": now}
        try:
            async with self._engine.begin() as conn:
                await conn.execute(sa.insert(models).values(row))
        except sa.exc.IntegrityError as exc:
            raise Duplicate from exc
        return model_from_row(row)

    async def get_model(self, model_id: str) -> ModelRow | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(models).where(models.c.id == model_id))).first()
        return None if row is None else model_from_row(dict(row._mapping))

    async def list_models(
        self, slug: str | None, provider_id: str | None, offset: int, limit: int
    ) -> tuple[list[ModelRow], int]:
        query = sa.select(models)
        if slug is not None:
            query = query.where(models.c.slug == slug)
        if provider_id is not None:
            query = query.where(models.c.provider_id == provider_id)
        # SPEC §4.2: ordered by slug, priority, created_at (the candidate order), then id for a stable page.
        order = [models.c.slug, models.c.priority, models.c.created_at, models.c.id]
        async with self._engine.connect() as conn:
            rows, total = await fetch_page(conn, query, order, offset, limit)
        return [model_from_row(r) for r in rows], total

    async def update_model(self, model_id: str, values: Mapping[str, Any]) -> ModelRow | None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(models).where(models.c.id == model_id).values({**values, "updated_at": utcnow()})
            )
            row = (await conn.execute(sa.select(models).where(models.c.id == model_id))).first()
        return None if row is None else model_from_row(dict(row._mapping))

    async def delete_model(self, model_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(models).where(models.c.id == model_id))
        return result.rowcount > 0

    # -- price catalogue imports (§19) ------------------------------------------------------------------------

    async def catalog_rows(self) -> tuple[list[Provider], list[ModelRow]]:
        """Every provider and every model row, as one consistent read."""
        async with self._engine.connect() as conn:
            found = (await conn.execute(sa.select(providers).order_by(providers.c.slug))).all()
            rows = (await conn.execute(sa.select(models).order_by(models.c.slug, models.c.id))).all()
        return [provider_from_row(dict(r._mapping)) for r in found], [model_from_row(dict(r._mapping)) for r in rows]

    async def apply_model_changes(
        self, updates: Sequence[tuple[str, Mapping[str, tuple[Any, Any]]]], inserts: Sequence[Mapping[str, Any]]
    ) -> bool:
        """In one transaction: each update ``(row id, {column: (old, new)})`` applies only while every column still
        holds its old value, and the inserts; if any row changed meanwhile (or a slug was taken) nothing is applied
        and False is returned."""
        now = utcnow()
        try:
            async with self._engine.begin() as conn:
                for model_id, changes in updates:
                    still = [
                        models.c[col].is_(None) if old is None else models.c[col] == old
                        for col, (old, _) in changes.items()
                    ]
                    new_values = {col: new for col, (_, new) in changes.items()}
                    result = await conn.execute(
                        sa.update(models)
                        .where(models.c.id == model_id, *still)
                        .values({**new_values, "updated_at": now})
                    )
                    if result.rowcount != 1:
                        raise _Changed
                for inserted in inserts:
                    await conn.execute(
                        sa.insert(models).values({**inserted, "id": new_id(), "created_at": now, "updated_at": now})
                    )
        except (_Changed, sa.exc.IntegrityError):
            return False
        return True


class _Changed(Exception):
    """A row no longer holds the values the import was planned from: roll the transaction back."""
