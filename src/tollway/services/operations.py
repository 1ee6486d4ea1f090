"""Operations use cases (SPEC §9.6, §13.4): the readiness checks of ``/readyz``, the store-wide gauges ``/metrics``
refreshes at scrape time, and the reconciliation report. Built once by ``app.py`` over the operations ports."""

from __future__ import annotations

import asyncio
import logging

from tollway.domain.ports.operations import DatabaseProbe, LimiterProbe, MoneyAudit
from tollway.domain.reconciliation import ReconcileReport
from tollway.errors import ServiceUnavailable
from tollway.observability.metrics import Metrics

log = logging.getLogger("tollway.health")

STORE_GAUGES_TIMEOUT_S = 2.0
# /readyz answers within 2 s even while the database hangs (frozen, a network partition): a check that takes longer
# than this fails the probe.
READINESS_TIMEOUT_S = 1.0


class Operations:
    def __init__(self, database: DatabaseProbe, limiter: LimiterProbe, audit: MoneyAudit, metrics: Metrics) -> None:
        self._database = database
        self._limiter = limiter
        self._audit = audit
        self._metrics = metrics
        self._check: asyncio.Task[bool] | None = None  # the database check in flight, at most one

    async def readiness(self) -> dict[str, str]:
        """The checks of a ready instance; raises ``ServiceUnavailable`` when the database is unreachable, does not
        answer within ``READINESS_TIMEOUT_S`` or a migration is pending. Draining is the HTTP layer's own check,
        made before this one.

        The database check runs as a task of its own, so that a hung database cannot hold the probe past its
        timeout (a cancelled connection still waits for its clean-up); while a check is still hung, the next probe
        fails at once instead of starting another one and taking another pooled connection."""
        if self._check is not None and not self._check.done():
            raise ServiceUnavailable("The database has not answered the previous readiness check yet.")
        check = self._check = asyncio.ensure_future(self._database_at_head())
        check.add_done_callback(_retrieve)
        done, _ = await asyncio.wait({check}, timeout=READINESS_TIMEOUT_S)
        if not done:
            check.cancel()
            raise ServiceUnavailable(f"The database did not answer within {READINESS_TIMEOUT_S} s.")
        try:
            at_head = check.result()
        except Exception as exc:
            raise ServiceUnavailable("The database is unreachable.") from exc
        if not at_head:
            raise ServiceUnavailable("Database migrations are pending.")
        return {"database": "ok", "redis": await self._limiter.backend_status()}

    async def _database_at_head(self) -> bool:
        await self._database.ping()
        return await self._database.migrations_at_head()

    async def refresh_store_gauges(self) -> None:
        """Read the store-wide totals into the metrics; when the database is down, the scrape goes on without them."""
        store = self._metrics.store
        try:
            async with asyncio.timeout(STORE_GAUGES_TIMEOUT_S):
                totals = await self._audit.store_totals()
        except Exception:
            log.warning("could not read holds and uncollected totals for /metrics", exc_info=True)
            store.holds_active = store.uncollected_nanos = None
            return
        store.holds_active, store.uncollected_nanos = totals.holds_active, totals.uncollected_nanos

    async def reconcile(self) -> ReconcileReport:
        """SPEC §9.6 invariants 1, 2 and 6 over one snapshot of the store."""
        try:
            return await self._audit.reconcile()
        except OSError as exc:
            raise ServiceUnavailable("The database is unreachable.") from exc


def _retrieve(task: asyncio.Task[bool]) -> None:
    """A check abandoned after its timeout may still fail later; its outcome is read so that nothing is logged as
    never retrieved."""
    if not task.cancelled():
        task.exception()
