"""The platform API under /v1/platforms/{pid} (SPEC §5.1–§5.3, §5.7): the platform itself, its API keys, its
LLM configs, its wallet and its usage log. Every handler runs the §2.3 checks first (platform key, scope
``manage``, own platform id, else 404); every query is scoped by that platform id."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.http.guards import require_platform_manage
from tollway.http.management import render
from tollway.http.management.params import (
    page_body,
    paging,
    path_id,
    query_id,
    query_text,
    query_time,
    read_body,
    read_optional_body,
)
from tollway.http.responses import json_response, no_content
from tollway.http.state import management, services
from tollway.services.management.accounts import LogFilters


async def _own_platform(request: Request) -> str:
    """The §2.3 checks; a malformed or foreign platform id is 404 (after authentication)."""
    raw = str(request.path_params["pid"])
    await require_platform_manage(request, raw)
    return path_id(request, "pid")


# -- the platform (§5.1) --------------------------------------------------------------------------------------


async def get_platform(request: Request) -> Response:
    platform_id = await _own_platform(request)
    return json_response(render.platform(await management(request).platforms.get(platform_id)))


async def update_platform(request: Request) -> Response:
    platform_id = await _own_platform(request)
    updated = await management(request).platforms.update(platform_id, await read_body(request))
    services(request).invalidate_caches()
    return json_response(render.platform(updated))


async def delete_platform(request: Request) -> Response:
    platform_id = await _own_platform(request)
    await management(request).platforms.delete(platform_id)
    services(request).invalidate_caches()
    return no_content()


# -- API keys (§5.2) ------------------------------------------------------------------------------------------


async def list_keys(request: Request) -> Response:
    platform_id = await _own_platform(request)
    pages = paging(request)
    key_type, end_user_id = query_text(request, "type"), query_id(request, "end_user_id")
    rows, total = await management(request).platform_keys.list_keys(
        platform_id, key_type, end_user_id, pages.offset, pages.limit
    )
    return json_response(page_body([render.api_key(row) for row in rows], total, pages))


async def create_key(request: Request) -> Response:
    platform_id = await _own_platform(request)
    row, raw_key = await management(request).platform_keys.issue(platform_id, await read_optional_body(request))
    services(request).invalidate_caches()
    return json_response(render.api_key(row, raw_key), 201)


async def revoke_key(request: Request) -> Response:
    platform_id = await _own_platform(request)
    await management(request).platform_keys.revoke(platform_id, path_id(request, "kid"))
    services(request).invalidate_caches()
    return no_content()


# -- LLM configs (§5.3) ---------------------------------------------------------------------------------------


async def list_configs(request: Request) -> Response:
    platform_id = await _own_platform(request)
    pages = paging(request)
    provider_id = query_id(request, "provider_id")
    rows, total = await management(request).llm_configs.list_configs(
        platform_id, provider_id, pages.offset, pages.limit
    )
    return json_response(page_body([render.llm_config(row) for row in rows], total, pages))


async def create_config(request: Request) -> Response:
    platform_id = await _own_platform(request)
    row = await management(request).llm_configs.create(platform_id, await read_body(request))
    services(request).invalidate_caches()
    return json_response(render.llm_config(row), 201)


async def get_config(request: Request) -> Response:
    platform_id = await _own_platform(request)
    row = await management(request).llm_configs.get(platform_id, path_id(request, "id"))
    return json_response(render.llm_config(row))


async def update_config(request: Request) -> Response:
    platform_id = await _own_platform(request)
    config_id = path_id(request, "id")
    row = await management(request).llm_configs.update(platform_id, config_id, await read_body(request))
    services(request).invalidate_caches()
    return json_response(render.llm_config(row))


async def delete_config(request: Request) -> Response:
    platform_id = await _own_platform(request)
    await management(request).llm_configs.delete(platform_id, path_id(request, "id"))
    services(request).invalidate_caches()
    return no_content()


# -- wallet and logs (§5.7) -----------------------------------------------------------------------------------


async def get_wallet(request: Request) -> Response:
    platform_id = await _own_platform(request)
    platform = await management(request).platforms.get(platform_id)
    wallet, recent = await management(request).accounts.wallet_with_recent(platform_id)
    body = render.wallet(wallet, platform["settings"])
    body["recent_transactions"] = [render.wallet_transaction(row) for row in recent]
    return json_response(body)


async def list_transactions(request: Request) -> Response:
    platform_id = await _own_platform(request)
    pages = paging(request)
    since, until = query_time(request, "since"), query_time(request, "until")
    rows, total = await management(request).accounts.transactions(
        platform_id, query_text(request, "type"), since, until, pages.offset, pages.limit
    )
    return json_response(page_body([render.wallet_transaction(row) for row in rows], total, pages))


async def list_logs(request: Request) -> Response:
    platform_id = await _own_platform(request)
    pages = paging(request)
    filters = LogFilters(
        model=query_text(request, "model"),
        end_user_id=query_id(request, "end_user_id"),
        status=query_text(request, "status"),
        request_type=query_text(request, "request_type"),
        since=query_time(request, "since"),
        until=query_time(request, "until"),
        response_id=query_text(request, "response_id"),
        thread_id=query_text(request, "thread_id"),
        mcp_app=query_text(request, "mcp_app"),
    )
    rows, total = await management(request).accounts.usage_logs(platform_id, filters, pages.offset, pages.limit)
    return json_response(page_body([render.usage_log(row) for row in rows], total, pages))


_BASE = "/v1/platforms/{pid}"

routes: list[BaseRoute] = [
    Route(_BASE, get_platform, methods=["GET"]),
    Route(_BASE, update_platform, methods=["PATCH"]),
    Route(_BASE, delete_platform, methods=["DELETE"]),
    Route(f"{_BASE}/api-keys", list_keys, methods=["GET"]),
    Route(f"{_BASE}/api-keys", create_key, methods=["POST"]),
    Route(f"{_BASE}/api-keys/{{kid}}", revoke_key, methods=["DELETE"]),
    Route(f"{_BASE}/llm-configs", list_configs, methods=["GET"]),
    Route(f"{_BASE}/llm-configs", create_config, methods=["POST"]),
    Route(f"{_BASE}/llm-configs/{{id}}", get_config, methods=["GET"]),
    Route(f"{_BASE}/llm-configs/{{id}}", update_config, methods=["PATCH"]),
    Route(f"{_BASE}/llm-configs/{{id}}", delete_config, methods=["DELETE"]),
    Route(f"{_BASE}/wallet", get_wallet, methods=["GET"]),
    Route(f"{_BASE}/wallet/transactions", list_transactions, methods=["GET"]),
    Route(f"{_BASE}/logs", list_logs, methods=["GET"]),
]
