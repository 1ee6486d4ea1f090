"""The platform overview of the console (SPEC §17.1): raw spend per UTC day over 30 days by model and by end user,
with the requests, errors and latency of the same rows. Read from the usage log with GROUP BY queries (one row per
day and model; the top end users by spend, the platform's own keys, and everyone else as one series)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from tollway.domain.clock import utcnow
from tollway.domain.ports.console import UsageAggregates

DAYS: Final = 30
TOP_END_USERS: Final = 5
PLATFORM_KEYS_LABEL: Final = "platform keys"
OTHER_USERS_LABEL: Final = "other end users"


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    nanos: list[int]  # one value per day of ``SpendOverview.days``

    @property
    def total_nanos(self) -> int:
        return sum(self.nanos)


@dataclass(frozen=True, slots=True)
class SpendOverview:
    days: list[str]  # YYYY-MM-DD, oldest first, today (UTC) last
    by_model: list[Series]
    by_end_user: list[Series]
    requests: list[int]
    errors: list[int]
    latency_ms_total: list[int]

    @property
    def total_requests(self) -> int:
        return sum(self.requests)

    @property
    def total_errors(self) -> int:
        return sum(self.errors)

    @property
    def total_nanos(self) -> int:
        return sum(series.total_nanos for series in self.by_model)

    @property
    def mean_latency_ms(self) -> int | None:
        count = self.total_requests
        return None if count == 0 else round(sum(self.latency_ms_total) / count)

    def mean_latency_by_day(self) -> list[int | None]:
        return [None if n == 0 else round(t / n) for n, t in zip(self.requests, self.latency_ms_total, strict=True)]


def window(now: datetime, days: int = DAYS) -> tuple[datetime, datetime, list[str]]:
    """``[since, until)`` covering the last ``days`` UTC days (today included) and their names."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = today - timedelta(days=days - 1)
    names = [(since + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(days)]
    return since, today + timedelta(days=1), names


class SpendReports:
    def __init__(self, store: UsageAggregates) -> None:
        self._store = store

    async def overview(self, platform_id: str, now: datetime | None = None) -> SpendOverview:
        since, until, days = window(now or utcnow())
        index = {day: i for i, day in enumerate(days)}
        models: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
        requests, errors, latency, totals = ([0] * len(days) for _ in range(4))
        for row in await self._store.by_model_day(platform_id, since, until):
            i = index.get(row.day)
            if i is None:
                continue
            models[row.model][i] += row.cost_nanos
            requests[i] += row.requests
            errors[i] += row.errors
            latency[i] += row.latency_ms_total
            totals[i] += row.cost_nanos
        by_model = sorted((Series(label, nanos) for label, nanos in models.items()), key=lambda s: -s.total_nanos)
        by_end_user = await self._by_end_user(platform_id, since, until, index, totals)
        return SpendOverview(days, by_model, by_end_user, requests, errors, latency)

    async def _by_end_user(
        self, platform_id: str, since: datetime, until: datetime, index: dict[str, int], totals: list[int]
    ) -> list[Series]:
        top = await self._store.top_spenders(platform_id, since, until, TOP_END_USERS)
        ids = [spender.end_user_id for spender in top]
        per_user: dict[str | None, list[int]] = defaultdict(lambda: [0] * len(totals))
        for row in await self._store.by_spender_day(platform_id, since, until, ids):
            i = index.get(row.day)
            if i is not None:
                per_user[row.end_user_id][i] += row.cost_nanos
        series = [Series(spender.label, per_user[spender.end_user_id]) for spender in top]
        platform_keys = per_user[None]
        if any(platform_keys):
            series.append(Series(PLATFORM_KEYS_LABEL, platform_keys))
        named = (
            [sum(values) for values in zip(*(s.nanos for s in series), strict=True)] if series else [0] * len(totals)
        )
        others = [max(0, total - shown) for total, shown in zip(totals, named, strict=True)]
        if any(others):
            series.append(Series(OTHER_USERS_LABEL, others))
        return series
