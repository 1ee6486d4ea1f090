"""Webhook endpoints and their deliveries (SPEC §5.8, §11.4): the management reads and writes, every query scoped
by the owning platform, and the dispatcher's claim/record cycle (row locks with ``SKIP LOCKED`` on PostgreSQL, so
that each due delivery is attempted by one instance at a time, §13.3)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.domain.conflicts import EndpointInactive
from tollway.domain.deliveries import DeliveryJob
from tollway.domain.ids import new_id
from tollway.domain.records import Record
from tollway.domain.webhooks import DeliveryStatus
from tollway.storage.sql.db import reader
from tollway.storage.sql.paging import fetch_page
from tollway.storage.sql.tables import webhook_deliveries, webhook_endpoints, webhook_events

_E = webhook_endpoints
_D = webhook_deliveries


def _live(platform_id: str, endpoint_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(_E.c.id == endpoint_id, _E.c.platform_id == platform_id, _E.c.deleted_at.is_(None))


async def _fail_pending(conn: AsyncConnection, endpoint_id: str, now: datetime) -> None:
    await conn.execute(
        sa.update(_D)
        .where(_D.c.endpoint_id == endpoint_id, _D.c.status == DeliveryStatus.PENDING.value)
        .values(status=DeliveryStatus.FAILED.value, next_attempt_at=None, updated_at=now)
    )


class WebhookStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self.postgres = engine.dialect.name == "postgresql"

    # -- endpoints ------------------------------------------------------------------------------------------------

    async def create(self, values: Mapping[str, Any]) -> Record:
        async with self._engine.begin() as conn:
            await conn.execute(sa.insert(_E).values(dict(values)))
        return dict(values)

    async def list_endpoints(self, platform_id: str, offset: int, limit: int) -> tuple[list[Record], int]:
        query = sa.select(_E).where(_E.c.platform_id == platform_id, _E.c.deleted_at.is_(None))
        async with self._reader.connect() as conn:
            return await fetch_page(conn, query, [_E.c.created_at.desc(), _E.c.id.desc()], offset, limit)

    async def get(self, platform_id: str, endpoint_id: str) -> Record | None:
        async with self._reader.connect() as conn:
            row = (await conn.execute(sa.select(_E).where(_live(platform_id, endpoint_id)))).first()
        return None if row is None else dict(row._mapping)

    async def update(
        self, platform_id: str, endpoint_id: str, values: Mapping[str, Any], now: datetime
    ) -> Record | None:
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.update(_E)
                    .where(_live(platform_id, endpoint_id))
                    .values({**values, "updated_at": now})
                    .returning(*_E.c)
                )
            ).first()
        return None if row is None else dict(row._mapping)

    async def delete(self, platform_id: str, endpoint_id: str, now: datetime) -> bool:
        """Soft delete (its deliveries keep their history); pending deliveries fail."""
        async with self._engine.begin() as conn:
            done = await conn.execute(
                sa.update(_E)
                .where(_live(platform_id, endpoint_id))
                .values(deleted_at=now, is_active=False, updated_at=now)
            )
            if not done.rowcount:
                return False
            await _fail_pending(conn, endpoint_id, now)
        return True

    async def rotate(
        self, platform_id: str, endpoint_id: str, sealed: bytes, expires_at: datetime, now: datetime
    ) -> bool:
        """The current secret becomes the previous one (in force until ``expires_at``)."""
        async with self._engine.begin() as conn:
            done = await conn.execute(
                sa.update(_E)
                .where(_live(platform_id, endpoint_id))
                .values(
                    previous_secret_sealed=_E.c.secret_sealed,
                    previous_secret_expires_at=expires_at,
                    secret_sealed=sealed,
                    updated_at=now,
                )
            )
        return bool(done.rowcount)

    # -- deliveries -----------------------------------------------------------------------------------------------

    async def deliveries(
        self, platform_id: str, endpoint_id: str, status: str | None, offset: int, limit: int
    ) -> tuple[list[Record], int]:
        query = sa.select(_D).where(_D.c.platform_id == platform_id, _D.c.endpoint_id == endpoint_id)
        if status is not None:
            query = query.where(_D.c.status == status)
        async with self._reader.connect() as conn:
            return await fetch_page(conn, query, [_D.c.created_at.desc(), _D.c.id.desc()], offset, limit)

    async def replay(self, platform_id: str, endpoint_id: str, delivery_id: str, now: datetime) -> Record | None:
        """A new pending delivery of the same event (same ``webhook-id`` and body); None when either is unknown."""
        async with self._engine.begin() as conn:
            endpoint = (await conn.execute(sa.select(_E.c.is_active).where(_live(platform_id, endpoint_id)))).first()
            if endpoint is None:
                return None
            query = sa.select(_D).where(
                _D.c.id == delivery_id, _D.c.endpoint_id == endpoint_id, _D.c.platform_id == platform_id
            )
            original = (await conn.execute(query)).first()
            if original is None:
                return None
            if not endpoint.is_active:
                raise EndpointInactive
            row = {
                "id": new_id(),
                "endpoint_id": endpoint_id,
                "platform_id": platform_id,
                "event_id": original.event_id,
                "event_type": original.event_type,
                "webhook_id": original.webhook_id,
                "status": DeliveryStatus.PENDING.value,
                "attempts": [],
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            await conn.execute(sa.insert(_D).values(row))
        return row

    # -- the dispatcher -------------------------------------------------------------------------------------------

    async def claim_due(self, now: datetime, lease: timedelta, limit: int) -> list[DeliveryJob]:
        """Locks up to ``limit`` due pending deliveries, pushes their ``next_attempt_at`` past the lease (so no other
        instance takes them while this one attempts; a crash lets them come due again), and returns them."""
        due = (
            sa.select(_D.c.id)
            .where(_D.c.status == DeliveryStatus.PENDING.value, _D.c.next_attempt_at <= now)
            .order_by(_D.c.next_attempt_at, _D.c.id)
            .limit(limit)
        )
        async with self._reader.connect() as conn:  # the cheap poll: no write lock unless something is due
            if (await conn.execute(due.limit(1))).first() is None:
                return []
        if self.postgres:
            due = due.with_for_update(skip_locked=True)
        async with self._engine.begin() as conn:
            ids = list((await conn.execute(due)).scalars())
            if not ids:
                return []
            await conn.execute(sa.update(_D).where(_D.c.id.in_(ids)).values(next_attempt_at=now + lease))
            query = (
                sa.select(
                    _D.c.id,
                    _D.c.platform_id,
                    _D.c.endpoint_id,
                    _E.c.url,
                    _E.c.secret_sealed,
                    _E.c.previous_secret_sealed,
                    _E.c.previous_secret_expires_at,
                    _D.c.webhook_id,
                    webhook_events.c.body,
                    _D.c.attempts,
                )
                .select_from(_D.join(_E, _E.c.id == _D.c.endpoint_id).join(webhook_events))
                .where(_D.c.id.in_(ids))
                .order_by(_D.c.id)
            )
            rows = (await conn.execute(query)).all()
        return [
            DeliveryJob(r[0], r[1], r[2], r[3], bytes(r[4]), None if r[5] is None else bytes(r[5]), r[6], r[7],
                        bytes(r[8]), list(r[9] or []))
            for r in rows
        ]  # fmt: skip

    async def record_attempt(
        self,
        delivery_id: str,
        attempts: list[dict[str, Any]],
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
        now: datetime,
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(_D)
                .where(_D.c.id == delivery_id, _D.c.status == DeliveryStatus.PENDING.value)
                .values(attempts=attempts, status=status.value, next_attempt_at=next_attempt_at, updated_at=now)
            )

    async def disable_gone(self, endpoint_id: str, now: datetime) -> None:
        """A 410: the endpoint is disabled (``gone``) and its pending deliveries fail (§11.4)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(_E)
                .where(_E.c.id == endpoint_id)
                .values(is_active=False, disabled_reason="gone", updated_at=now)
            )
            await _fail_pending(conn, endpoint_id, now)

    async def pending_count(self) -> int:
        query = sa.select(sa.func.count()).select_from(_D).where(_D.c.status == DeliveryStatus.PENDING.value)
        async with self._reader.connect() as conn:
            return int((await conn.execute(query)).scalar_one())
