"""End-user self-service under /v1/me (SPEC §6) with an ``sk-eu_`` key (a platform key is 403 ``wrong_key_type``):
the caller's active budget and its own usage rows, without the raw provider cost and routing details."""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.domain.tenancy import Principal
from tollway.http.guards import require_end_user
from tollway.http.management import render
from tollway.http.management.end_users import render_budget
from tollway.http.management.params import page_body, paging, query_text, query_time
from tollway.http.responses import json_response
from tollway.http.state import management
from tollway.services.management.accounts import LogFilters

# What the platform sees but its end users do not (§6).
HIDDEN_USAGE_FIELDS: Final = ("cost_usd", "uncollected_usd", "provider_id", "provider_model")


def _owner(principal: Principal) -> tuple[str, str]:
    assert principal.platform_id is not None and principal.end_user_id is not None  # an end-user key has both
    return principal.platform_id, principal.end_user_id


async def my_budget(request: Request) -> Response:
    platform_id, end_user_id = _owner(await require_end_user(request))
    budget = await management(request).budgets.get_active(platform_id, end_user_id)
    return json_response(render_budget(budget))


def _usage_row(row: Any) -> dict[str, Any]:
    body = render.usage_log(row)
    for name in HIDDEN_USAGE_FIELDS:
        del body[name]
    return body


async def my_usage(request: Request) -> Response:
    platform_id, end_user_id = _owner(await require_end_user(request))
    pages = paging(request)
    filters = LogFilters(
        model=query_text(request, "model"),
        end_user_id=end_user_id,  # only the caller's own rows, whatever the query says (§15)
        status=query_text(request, "status"),
        request_type=query_text(request, "request_type"),
        since=query_time(request, "since"),
        until=query_time(request, "until"),
        response_id=query_text(request, "response_id"),
        thread_id=query_text(request, "thread_id"),
        mcp_app=query_text(request, "mcp_app"),
    )
    rows, total = await management(request).accounts.usage_logs(platform_id, filters, pages.offset, pages.limit)
    return json_response(page_body([_usage_row(row) for row in rows], total, pages))


routes: list[BaseRoute] = [
    Route("/v1/me/budget", my_budget, methods=["GET"]),
    Route("/v1/me/usage", my_usage, methods=["GET"]),
]
