"""The platform overview (SPEC §17.1): wallet balance and held amount, and over the last 30 UTC days the raw spend
per day by model and by end user (charts, with the same numbers in tables), requests, errors and latency."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.money import format_usd
from tollway.http.console.pages import render
from tollway.http.management import render as api
from tollway.http.state import management, services
from tollway.services.console.sessions import ActiveSession
from tollway.services.console.spend import Series


def _chart(days: list[str], series: list[Series]) -> dict[str, Any]:
    """What one chart's canvas carries (``data-days``, ``data-series``) and its table shows."""
    rows = [
        {"label": s.label, "values": [format_usd(v) for v in s.nanos], "total": format_usd(s.total_nanos)}
        for s in series
    ]
    return {
        "days": orjson.dumps(days).decode(),
        "series": orjson.dumps([{"label": r["label"], "values": r["values"]} for r in rows]).decode(),
        "rows": rows,
    }


async def overview_page(request: Request, session: ActiveSession) -> Response:
    platform_id = session.principal.platform_id
    assert platform_id is not None  # a platform session
    m = management(request)
    platform = await m.platforms.get(platform_id)
    wallet = api.wallet(await m.accounts.wallet(platform_id), platform["settings"])
    report = await services(request).console.spend.overview(platform_id)
    traffic = [Series("requests", report.requests), Series("errors", report.errors)]
    daily = [
        {"day": day, "requests": n, "errors": e, "latency_ms": lat}
        for day, n, e, lat in zip(
            report.days, report.requests, report.errors, report.mean_latency_by_day(), strict=True
        )
    ]
    traffic_chart = {
        "days": orjson.dumps(report.days).decode(),
        "series": orjson.dumps([{"label": s.label, "values": s.nanos} for s in traffic]).decode(),
    }
    return render(
        request,
        session,
        "pl_overview.html",
        platform=api.platform(platform),
        wallet=wallet,
        report=report,
        total_usd=format_usd(report.total_nanos),
        by_model=_chart(report.days, report.by_model),
        by_end_user=_chart(report.days, report.by_end_user),
        traffic=traffic_chart,
        daily=daily,
    )
