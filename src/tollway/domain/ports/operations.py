"""The operations ports (SPEC §9.6, §11.3, §13): what readiness, the store gauges, reconciliation, instance presence,
the hold sweeper and the webhook dispatcher need from the store and the rate limiter. ``storage/sql`` implements
them; ``services/operations.py`` and ``workers/`` depend on them only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from tollway.domain.deliveries import DeliveryJob
from tollway.domain.instances import Heartbeat
from tollway.domain.reconciliation import ReconcileReport, StoreTotals
from tollway.domain.webhooks import DeliveryStatus


class DatabaseProbe(Protocol):
    """``/readyz``: both raise when the database cannot be reached."""

    async def ping(self) -> None: ...

    async def migrations_at_head(self) -> bool: ...


class LimiterProbe(Protocol):
    """``/readyz``'s ``redis`` check: ``disabled`` without Redis, else ``ok`` or ``degraded``."""

    async def backend_status(self) -> str: ...


class MoneyAudit(Protocol):
    """Reads over the whole money store: reconciliation (§9.6) in one snapshot, and the ``/metrics`` totals."""

    async def reconcile(self) -> ReconcileReport: ...

    async def store_totals(self) -> StoreTotals: ...


class InstanceRegistry(Protocol):
    """The heartbeat rows of the instances serving one database (SPEC §13.2)."""

    async def register(self, beat: Heartbeat) -> None: ...

    async def beat(self, instance_id: str, now: datetime) -> None: ...

    async def leave(self, instance_id: str) -> None: ...

    async def others(self, instance_id: str | None) -> list[Heartbeat]:
        """Every row but ``instance_id``'s (every row when it is None)."""
        ...

    async def forget(self, instance_ids: Sequence[str]) -> None:
        """Drop the rows of processes known to be dead."""
        ...


class ExpiredHolds(Protocol):
    """The hold sweeper's scan (SPEC §9.4): ids of active holds expired at ``now``, oldest first."""

    async def expired(self, now: datetime, limit: int) -> list[str]: ...


class DeliveryQueue(Protocol):
    """The webhook dispatcher's side of the outbox (SPEC §11.3, §13.3): claim due deliveries under a lease, record
    each attempt, disable an endpoint that answered 410, count what is pending."""

    async def claim_due(self, now: datetime, lease: timedelta, limit: int) -> list[DeliveryJob]: ...

    async def record_attempt(
        self,
        delivery_id: str,
        attempts: list[dict[str, Any]],
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
        now: datetime,
    ) -> None: ...

    async def disable_gone(self, endpoint_id: str, now: datetime) -> None: ...

    async def pending_count(self) -> int: ...
