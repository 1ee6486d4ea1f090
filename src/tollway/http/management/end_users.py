"""End users and their budgets under /v1/platforms/{pid} (SPEC §5.4, §5.5): the §2.3 checks first (platform key,
scope ``manage``, own platform, live end user, else 404), then the body, then the Idempotency-Key (§9.7) on budget
topup, debit and PATCH, then the operation. Writes that change who may authenticate invalidate the caches."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.domain.budget_changes import BudgetChange, BudgetRow
from tollway.domain.clock import rfc3339
from tollway.domain.idempotency import StoredResponse
from tollway.domain.money import nanos_to_json_number
from tollway.domain.records import Record
from tollway.http.guards import require_platform_manage
from tollway.http.management import render
from tollway.http.management.params import (
    page_body,
    paging,
    path_id,
    query_text,
    query_time,
    read_body,
    read_optional_body,
)
from tollway.http.responses import json_response, no_content
from tollway.http.state import management, services
from tollway.services.management import budgets as budget_rules
from tollway.services.management.budgets import Budgets
from tollway.services.management.end_users import EndUsers
from tollway.services.management.idempotency import Idempotency, IdempotentRequest, Outcome, idempotent_request

# -- rendering (§5.4, §5.5) -----------------------------------------------------------------------------------


def _usd(nanos: int | None) -> Any:
    return None if nanos is None else nanos_to_json_number(int(nanos))


def render_end_user(row: Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "platform_id": row["platform_id"],
        "external_id": row["external_id"],
        "display_name": row["display_name"],
        "metadata": row["metadata"] if row["metadata"] is not None else {},
        "is_active": bool(row["is_active"]),
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


def render_budget(b: BudgetRow) -> dict[str, Any]:
    return {
        "id": b.id,
        "platform_id": b.platform_id,
        "end_user_id": b.end_user_id,
        "max_usd": _usd(b.max_nanos),
        "used_usd": _usd(b.used_nanos),
        "remaining_usd": _usd(b.remaining_nanos),
        "held_usd": _usd(b.held_nanos),
        "available_usd": _usd(max(0, b.available_nanos)),
        "period": b.period.value,
        "period_start": rfc3339(b.period_start),
        "next_reset_at": rfc3339(b.next_reset_at),
        "auto_replenish": b.auto_replenish,
        "replenish_amount": _usd(b.replenish_nanos),
        "low_balance_threshold": _usd(b.low_balance_threshold_nanos),
        "is_active": b.is_active,
        "is_suspended": b.is_suspended,
        "created_at": rfc3339(b.created_at),
        "updated_at": rfc3339(b.updated_at),
    }


def render_budget_transaction(row: Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "budget_id": row["budget_id"],
        "platform_id": row["platform_id"],
        "end_user_id": row["end_user_id"],
        "type": row["type"],
        "amount_usd": _usd(row["amount_nanos"]),
        "max_usd_after": _usd(row["max_after_nanos"]),
        "used_usd_after": _usd(row["used_after_nanos"]),
        "remaining_usd_after": _usd(row["remaining_after_nanos"]),
        "reason": row["reason"],
        "metadata": row["metadata"] if row["metadata"] is not None else {},
        "request_id": row["request_id"],
        "created_at": rfc3339(row["created_at"]),
    }


def _change_body(change: BudgetChange) -> StoredResponse:
    body = {"budget": render_budget(change.budget), "transaction": render_budget_transaction(change.transaction)}
    return StoredResponse(200, orjson.dumps(body))


def _budget_body(budget: BudgetRow) -> StoredResponse:
    return StoredResponse(200, orjson.dumps(render_budget(budget)))


# -- wiring and checks ----------------------------------------------------------------------------------------


def _end_users(request: Request) -> EndUsers:
    return management(request).end_users


def _budgets(request: Request) -> Budgets:
    return management(request).budgets


def _idempotency(request: Request) -> Idempotency:
    return management(request).idempotency


async def _own_platform(request: Request) -> str:
    """The §2.3 checks; a malformed or foreign platform id is 404 (after authentication)."""
    await require_platform_manage(request, str(request.path_params["pid"]))
    return path_id(request, "pid")


async def _own_end_user(request: Request) -> tuple[str, str]:
    """Platform checks, then the end user in the path must be a live one of this platform (404 before the body)."""
    platform_id = await _own_platform(request)
    end_user_id = path_id(request, "id")
    await _end_users(request).get(platform_id, end_user_id)
    return platform_id, end_user_id


def _idempotent(request: Request, platform_id: str, body: dict[str, Any]) -> IdempotentRequest | None:
    header = request.headers.get("idempotency-key")
    return idempotent_request(platform_id, request.method, request.url.path, header, body)


def _respond(outcome: Outcome) -> Response:
    return Response(outcome.body, outcome.status, headers=outcome.headers, media_type="application/json")


# -- end users (§5.4) -----------------------------------------------------------------------------------------


async def create_end_user(request: Request) -> Response:
    platform_id = await _own_platform(request)
    creation, raw_key = await _end_users(request).create(platform_id, await read_body(request))
    services(request).invalidate_caches()  # a key was created
    body = render_end_user(creation.end_user)
    body["api_key"] = render.api_key(creation.api_key, raw_key)
    body["budget"] = None if creation.budget is None else render_budget(creation.budget)
    return json_response(body, 201 if creation.created else 200)


async def list_end_users(request: Request) -> Response:
    platform_id = await _own_platform(request)
    pages = paging(request)
    external_id = query_text(request, "external_id")
    rows, total = await _end_users(request).list_end_users(platform_id, external_id, pages.offset, pages.limit)
    return json_response(page_body([render_end_user(row) for row in rows], total, pages))


async def get_end_user(request: Request) -> Response:
    platform_id = await _own_platform(request)
    return json_response(render_end_user(await _end_users(request).get(platform_id, path_id(request, "id"))))


async def update_end_user(request: Request) -> Response:
    platform_id = await _own_platform(request)
    end_user_id = path_id(request, "id")
    body = await read_body(request)
    updated = await _end_users(request).update(platform_id, end_user_id, body)
    if "is_active" in body:
        services(request).invalidate_caches()  # is_active is part of every cached end-user principal
    return json_response(render_end_user(updated))


async def delete_end_user(request: Request) -> Response:
    platform_id = await _own_platform(request)
    await _end_users(request).delete(platform_id, path_id(request, "id"))
    services(request).invalidate_caches()
    return no_content()


async def create_end_user_key(request: Request) -> Response:
    platform_id = await _own_platform(request)
    end_user_id = path_id(request, "id")
    row, raw_key = await _end_users(request).issue_key(platform_id, end_user_id, await read_optional_body(request))
    services(request).invalidate_caches()
    return json_response(render.api_key(row, raw_key), 201)


# -- budgets (§5.5) -------------------------------------------------------------------------------------------


async def create_budget(request: Request) -> Response:
    platform_id, end_user_id = await _own_end_user(request)
    spec = budget_rules.parse_spec(await read_body(request))
    created = await _budgets(request).create(platform_id, end_user_id, spec)
    return json_response(render_budget(created.budget), 201)


async def get_budget(request: Request) -> Response:
    platform_id, end_user_id = await _own_end_user(request)
    return json_response(render_budget(await _budgets(request).get(platform_id, end_user_id)))


async def update_budget(request: Request) -> Response:
    platform_id, end_user_id = await _own_end_user(request)
    body = await read_body(request)
    patch = budget_rules.parse_patch(body)
    action = _budgets(request).update(platform_id, end_user_id, patch)
    return _respond(await _idempotency(request).execute(_idempotent(request, platform_id, body), action, _budget_body))


async def topup_budget(request: Request) -> Response:
    platform_id, end_user_id = await _own_end_user(request)
    body = await read_body(request)
    action = _budgets(request).topup(platform_id, end_user_id, budget_rules.parse_topup(body))
    return _respond(await _idempotency(request).execute(_idempotent(request, platform_id, body), action, _change_body))


async def debit_budget(request: Request) -> Response:
    platform_id, end_user_id = await _own_end_user(request)
    body = await read_body(request)
    action = _budgets(request).debit(platform_id, end_user_id, budget_rules.parse_debit(body))
    return _respond(await _idempotency(request).execute(_idempotent(request, platform_id, body), action, _change_body))


async def list_budget_transactions(request: Request) -> Response:
    platform_id, end_user_id = await _own_end_user(request)
    pages = paging(request)
    since, until = query_time(request, "since"), query_time(request, "until")
    rows, total = await _budgets(request).transactions(
        platform_id, end_user_id, query_text(request, "type"), since, until, pages.offset, pages.limit
    )
    return json_response(page_body([render_budget_transaction(row) for row in rows], total, pages))


_USERS = "/v1/platforms/{pid}/end-users"
_BUDGET = f"{_USERS}/{{id}}/budget"

routes: list[BaseRoute] = [
    Route(_USERS, create_end_user, methods=["POST"]),
    Route(_USERS, list_end_users, methods=["GET"]),
    Route(f"{_USERS}/{{id}}", get_end_user, methods=["GET"]),
    Route(f"{_USERS}/{{id}}", update_end_user, methods=["PATCH"]),
    Route(f"{_USERS}/{{id}}", delete_end_user, methods=["DELETE"]),
    Route(f"{_USERS}/{{id}}/api-keys", create_end_user_key, methods=["POST"]),
    Route(_BUDGET, create_budget, methods=["POST"]),
    Route(_BUDGET, get_budget, methods=["GET"]),
    Route(_BUDGET, update_budget, methods=["PATCH"]),
    Route(f"{_BUDGET}/topup", topup_budget, methods=["POST"]),
    Route(f"{_BUDGET}/debit", debit_budget, methods=["POST"]),
    Route(f"{_BUDGET}/transactions", list_budget_transactions, methods=["GET"]),
]
