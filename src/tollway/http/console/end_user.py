"""An end user's own pages (SPEC §17.1, §6): its budget and effective rate limits (``GET /v1/me/budget`` and
``/v1/me/rate-limits``) and its keys (names, prefixes and use, never the keys). Usage is in ``logs.py``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tollway.errors import NotFound
from tollway.http.console.pages import render
from tollway.http.management import render as api
from tollway.http.management.end_users import render_budget
from tollway.http.state import management
from tollway.services.console.sessions import ActiveSession


def _owner(session: ActiveSession) -> tuple[str, str]:
    principal = session.principal
    assert principal.platform_id is not None and principal.end_user_id is not None  # an end-user session
    return principal.platform_id, principal.end_user_id


async def budget_view(request: Request, session: ActiveSession) -> Response:
    platform_id, end_user_id = _owner(session)
    m = management(request)
    try:
        budget: dict[str, Any] | None = render_budget(await m.budgets.get_active(platform_id, end_user_id))
    except NotFound:
        budget = None
    effective = await m.rate_limits.effective(platform_id, end_user_id)
    limits = {
        "rpm_limit": effective.limits.rpm,
        "tpm_limit": effective.limits.tpm,
        "rpd_limit": effective.limits.rpd,
        "resolution": effective.resolution.value,
    }
    return render(
        request, session, "eu_budget.html", budget=budget, limits=limits, active=session.principal.end_user_active
    )


async def keys_view(request: Request, session: ActiveSession) -> Response:
    platform_id, end_user_id = _owner(session)
    rows, _ = await management(request).platform_keys.list_keys(platform_id, "end_user", end_user_id, 0, 100)
    return render(
        request, session, "eu_keys.html", keys=[api.api_key(row) for row in rows], own_key_id=session.principal.key_id
    )
