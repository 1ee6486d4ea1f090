"""The transactional outbox (SPEC §11.4, §9.6 invariant 8): event rows, and one delivery row per active endpoint
subscribed to the type, written inside the transaction of the ledger row that caused them.

Two writers share the row shapes: ``enqueue`` for the management paths (SQLAlchemy Core on the caller's
``AsyncConnection``) and ``DriverOutbox`` for the money writer's batches (static driver SQL, bulk INSERTs, one
endpoint lookup per batch). Events nobody subscribes to write nothing: there is no one to deliver them to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.domain.ids import new_id
from tollway.domain.webhooks import DeliveryStatus, envelope, event_id, new_webhook_id
from tollway.storage.money.driver_sql import DriverConnection, DriverSQL
from tollway.storage.sql.tables import webhook_deliveries, webhook_endpoints, webhook_events

# platform id -> event type -> subscribed endpoint ids
Subscriptions = dict[str, dict[str, list[str]]]


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event about to be committed: its type, the ledger row that caused it and its ``data`` (§11.2)."""

    platform_id: str
    event_type: str
    transaction_id: str
    data: Mapping[str, Any]


def _events_list(value: Any) -> list[str]:
    raw = orjson.loads(value) if isinstance(value, str | bytes) else value
    return [str(e) for e in raw] if isinstance(raw, list) else []


def index_subscriptions(rows: Iterable[Sequence[Any]]) -> Subscriptions:
    """``(endpoint_id, platform_id, events)`` rows to the lookup table the writers use."""
    subs: Subscriptions = {}
    for endpoint_id, platform_id, events in rows:
        by_type = subs.setdefault(str(platform_id), {})
        for event_type in _events_list(events):
            by_type.setdefault(event_type, []).append(str(endpoint_id))
    return subs


def outbox_rows(
    subs: Subscriptions, events: Iterable[PendingEvent], now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The event and delivery rows (timestamps and JSON not yet encoded) for the events somebody subscribes to."""
    event_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    for event in events:
        endpoints = subs.get(event.platform_id, {}).get(event.event_type)
        if not endpoints:
            continue
        eid = event_id(event.transaction_id, event.event_type)
        webhook_id = new_webhook_id()
        event_rows.append(
            {
                "id": eid,
                "platform_id": event.platform_id,
                "event_type": event.event_type,
                "webhook_id": webhook_id,
                "body": envelope(event.event_type, event.transaction_id, now, event.data),
                "created_at": now,
            }
        )
        for endpoint_id in endpoints:
            delivery_rows.append(
                {
                    "id": new_id(),
                    "endpoint_id": endpoint_id,
                    "platform_id": event.platform_id,
                    "event_id": eid,
                    "event_type": event.event_type,
                    "webhook_id": webhook_id,
                    "status": DeliveryStatus.PENDING.value,
                    "attempts": [],
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    return event_rows, delivery_rows


def _active(platform_ids: Sequence[str]) -> sa.Select[Any]:
    return sa.select(webhook_endpoints.c.id, webhook_endpoints.c.platform_id, webhook_endpoints.c.events).where(
        webhook_endpoints.c.platform_id.in_(platform_ids),
        webhook_endpoints.c.is_active.is_(True),
        webhook_endpoints.c.deleted_at.is_(None),
    )


async def subscriptions(conn: AsyncConnection, platform_ids: Sequence[str]) -> Subscriptions:
    rows = (await conn.execute(_active(platform_ids))).all()
    return index_subscriptions((r[0], r[1], r[2]) for r in rows)


async def enqueue(conn: AsyncConnection, events: Sequence[PendingEvent], now: datetime) -> int:
    """Inside the caller's transaction; returns how many deliveries were queued."""
    if not events:
        return 0
    subs = await subscriptions(conn, sorted({e.platform_id for e in events}))
    event_rows, delivery_rows = outbox_rows(subs, events, now)
    if event_rows:
        await conn.execute(sa.insert(webhook_events), event_rows)
        await conn.execute(sa.insert(webhook_deliveries), delivery_rows)
    return len(delivery_rows)


_SELECT_ACTIVE = (
    "SELECT id, platform_id, events FROM webhook_endpoints"
    " WHERE platform_id IN (:ids) AND is_active = :active AND deleted_at IS NULL"
)
_INSERT_EVENT = (
    "INSERT INTO webhook_events (id, platform_id, event_type, webhook_id, body, created_at)"
    " VALUES (:id, :platform_id, :event_type, :webhook_id, :body, :created_at)"
)
_INSERT_DELIVERY = (
    "INSERT INTO webhook_deliveries (id, endpoint_id, platform_id, event_id, event_type, webhook_id, status,"
    " attempts, next_attempt_at, created_at, updated_at) VALUES (:id, :endpoint_id, :platform_id, :event_id,"
    " :event_type, :webhook_id, :status, :attempts, :next_attempt_at, :created_at, :updated_at)"
)


class DriverOutbox:
    """The outbox for one money batch: the subscriptions of its platforms read once, rows written in bulk."""

    def __init__(
        self, conn: DriverConnection, sql: DriverSQL, platform_ids: Sequence[str], known: Subscriptions | None = None
    ) -> None:
        """``known``: subscriptions already read in this state of the database (the money writer's cache)."""
        self.conn = conn
        self.sql = sql
        known = known or {}
        self.subs: Subscriptions = {p: known[p] for p in platform_ids if p in known}
        missing = sorted(set(platform_ids) - self.subs.keys())
        if missing:
            text, params = sql.any_of(_SELECT_ACTIVE, {"ids": missing})  # one statement shape on PostgreSQL
            rows = sql.execute(conn, text, {**params, "active": True})
            found = index_subscriptions(rows)
            self.subs.update({p: found.get(p, {}) for p in missing})
        self.pending: list[PendingEvent] = []

    def subs_of(self, platform_ids: Sequence[str]) -> Subscriptions:
        return {p: self.subs.get(p, {}) for p in platform_ids}

    def wants(self, platform_id: str, event_type: str) -> bool:
        return bool(self.subs.get(platform_id, {}).get(event_type))

    def add(self, event: PendingEvent) -> None:
        self.pending.append(event)

    def flush(self, now: datetime) -> None:
        if not self.pending:
            return
        event_rows, delivery_rows = outbox_rows(self.subs, self.pending, now)
        stamp = self.sql.ts(now)
        for row in event_rows:
            row["created_at"] = stamp
        for row in delivery_rows:
            row["attempts"] = "[]"
            row["next_attempt_at"] = row["created_at"] = row["updated_at"] = stamp
        self.sql.executemany(self.conn, _INSERT_EVENT, event_rows)
        self.sql.executemany(self.conn, _INSERT_DELIVERY, delivery_rows)
        self.pending.clear()
