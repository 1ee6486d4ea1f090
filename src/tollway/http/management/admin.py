"""The operator API under /v1/admin (SPEC §4): providers, priced model rows, platforms, recovery keys and wallet
top-ups. Every handler authenticates the operator key first; catalog writes invalidate routing caches."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.domain.idempotency import StoredResponse
from tollway.domain.price_catalog import report_body
from tollway.domain.records import Record
from tollway.http.guards import require_operator
from tollway.http.management import render
from tollway.http.management.params import (
    page_body,
    paging,
    path_id,
    query_bool,
    query_id,
    query_text,
    read_body,
    read_optional_body,
    request_id,
)
from tollway.http.responses import json_response, no_content
from tollway.http.state import management, services
from tollway.services.management.accounts import parse_wallet_topup
from tollway.services.management.idempotency import idempotent_request

# -- providers (§4.1) -----------------------------------------------------------------------------------------


async def create_provider(request: Request) -> Response:
    await require_operator(request)
    created = await management(request).catalog.create_provider(await read_body(request))
    services(request).invalidate_caches()
    return json_response(render.provider(created), 201)


async def list_providers(request: Request) -> Response:
    await require_operator(request)
    pages = paging(request)
    rows, total = await management(request).catalog.list_providers(
        query_text(request, "kind"), pages.offset, pages.limit
    )
    return json_response(page_body([render.provider(p) for p in rows], total, pages))


async def get_provider(request: Request) -> Response:
    await require_operator(request)
    found = await management(request).catalog.get_provider(path_id(request, "id"))
    return json_response(render.provider(found))


async def update_provider(request: Request) -> Response:
    await require_operator(request)
    provider_id = path_id(request, "id")
    updated = await management(request).catalog.update_provider(provider_id, await read_body(request))
    services(request).invalidate_caches()
    return json_response(render.provider(updated))


async def delete_provider(request: Request) -> Response:
    await require_operator(request)
    await management(request).catalog.delete_provider(path_id(request, "id"))
    services(request).invalidate_caches()
    return no_content()


# -- model rows (§4.2) ----------------------------------------------------------------------------------------


async def create_model(request: Request) -> Response:
    await require_operator(request)
    created = await management(request).catalog.create_model(await read_body(request))
    services(request).invalidate_caches()
    return json_response(render.model(created), 201)


async def list_models(request: Request) -> Response:
    await require_operator(request)
    pages = paging(request)
    slug, provider_id = query_text(request, "slug"), query_id(request, "provider_id")
    rows, total = await management(request).catalog.list_models(slug, provider_id, pages.offset, pages.limit)
    return json_response(page_body([render.model(m) for m in rows], total, pages))


async def get_model(request: Request) -> Response:
    await require_operator(request)
    found = await management(request).catalog.get_model(path_id(request, "id"))
    return json_response(render.model(found))


async def update_model(request: Request) -> Response:
    await require_operator(request)
    model_id = path_id(request, "id")
    updated = await management(request).catalog.update_model(model_id, await read_body(request))
    services(request).invalidate_caches()
    return json_response(render.model(updated))


async def delete_model(request: Request) -> Response:
    await require_operator(request)
    await management(request).catalog.delete_model(path_id(request, "id"))
    services(request).invalidate_caches()
    return no_content()


async def import_models(request: Request) -> Response:
    """SPEC §19: the body is LiteLLM's catalogue object itself, or ``{"url": "https://..."}``; ``?provider=SLUG``
    selects one provider (and lets the import create its rows), ``?dry_run=true`` only reports."""
    await require_operator(request)
    prices = management(request).prices
    dry_run = query_bool(request, "dry_run")
    catalog = await prices.catalog_of(await read_body(request))
    result = await prices.run(catalog, query_text(request, "provider"), dry_run=dry_run)
    if result.applied:
        services(request).invalidate_caches()
    provider = result.provider.slug if result.provider else None
    return json_response(report_body(result.plan, provider, dry_run=dry_run, applied=result.applied))


# -- platforms (§4.3) -----------------------------------------------------------------------------------------


async def create_platform(request: Request) -> Response:
    await require_operator(request)
    created = await management(request).platforms.create(await read_body(request))
    services(request).invalidate_caches()  # a key was created
    body = {
        "platform": render.platform(created.platform),
        "wallet": render.wallet(created.wallet, created.platform["settings"]),
        "api_key": render.api_key(created.api_key, created.raw_key),
    }
    return json_response(body, 201)


async def list_platforms(request: Request) -> Response:
    await require_operator(request)
    pages = paging(request)
    rows, total = await management(request).platforms.list_platforms(pages.offset, pages.limit)
    return json_response(page_body([render.platform(p) for p in rows], total, pages))


async def get_platform(request: Request) -> Response:
    await require_operator(request)
    platform_id = path_id(request, "pid")
    platform = await management(request).platforms.get(platform_id)
    wallet = await management(request).accounts.wallet(platform_id)
    return json_response({"platform": render.platform(platform), "wallet": render.wallet(wallet, platform["settings"])})


async def create_platform_key(request: Request) -> Response:
    await require_operator(request)
    platform_id = path_id(request, "pid")
    row, raw_key = await management(request).platform_keys.issue(platform_id, await read_optional_body(request))
    services(request).invalidate_caches()
    return json_response(render.api_key(row, raw_key), 201)


async def topup_wallet(request: Request) -> Response:
    """Honours Idempotency-Key (§9.7) in the operator's scope; the record commits with the ledger row."""
    await require_operator(request)
    platform_id = path_id(request, "pid")
    platform = await management(request).platforms.get(platform_id)
    body = await read_body(request)
    action = management(request).accounts.topup_action(platform_id, parse_wallet_topup(body), request_id(request))
    key = idempotent_request("operator", request.method, request.url.path, request.headers.get("idempotency-key"), body)

    def rendered(result: tuple[Record, Record]) -> StoredResponse:
        wallet, txn = result
        content = {"wallet": render.wallet(wallet, platform["settings"]), "transaction": render.wallet_transaction(txn)}
        return StoredResponse(200, orjson.dumps(content))

    outcome = await management(request).idempotency.execute(key, action, rendered)
    return Response(outcome.body, outcome.status, headers=outcome.headers, media_type="application/json")


routes: list[BaseRoute] = [
    Route("/v1/admin/providers", create_provider, methods=["POST"]),
    Route("/v1/admin/providers", list_providers, methods=["GET"]),
    Route("/v1/admin/providers/{id}", get_provider, methods=["GET"]),
    Route("/v1/admin/providers/{id}", update_provider, methods=["PATCH"]),
    Route("/v1/admin/providers/{id}", delete_provider, methods=["DELETE"]),
    Route("/v1/admin/models", create_model, methods=["POST"]),
    Route("/v1/admin/models/import", import_models, methods=["POST"]),
    Route("/v1/admin/models", list_models, methods=["GET"]),
    Route("/v1/admin/models/{id}", get_model, methods=["GET"]),
    Route("/v1/admin/models/{id}", update_model, methods=["PATCH"]),
    Route("/v1/admin/models/{id}", delete_model, methods=["DELETE"]),
    Route("/v1/admin/platforms", create_platform, methods=["POST"]),
    Route("/v1/admin/platforms", list_platforms, methods=["GET"]),
    Route("/v1/admin/platforms/{pid}", get_platform, methods=["GET"]),
    Route("/v1/admin/platforms/{pid}/api-keys", create_platform_key, methods=["POST"]),
    Route("/v1/admin/platforms/{pid}/wallet/topup", topup_wallet, methods=["POST"]),
]
