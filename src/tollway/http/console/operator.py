"""The operator's pages (SPEC §17.1, §4): platforms and their wallets (top-up, recovery keys), providers, model rows
and their prices, reconciliation. Each action calls the operator API's service with the body the API would get."""

from __future__ import annotations

from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.catalog import ProviderKind
from tollway.domain.console import ShownOnce
from tollway.domain.idempotency import StoredResponse
from tollway.domain.keys import KeyKind
from tollway.domain.records import Record
from tollway.errors import TollwayError
from tollway.http.console.form_keys import first_answer, idempotency_key, new_form_key
from tollway.http.console.pages import redirect, render
from tollway.http.console.session import form, page, show_once
from tollway.http.management import render as api
from tollway.http.management.params import paging, path_id, request_id
from tollway.http.state import management, services
from tollway.services.console.sessions import ActiveSession
from tollway.services.management.accounts import parse_wallet_topup
from tollway.services.management.idempotency import idempotent_request

OPERATOR: Final = KeyKind.OPERATOR
PROVIDER_KINDS: Final = [kind.value for kind in ProviderKind]
_MODEL_FIELDS: Final = {
    "slug": "text",
    "provider_id": "text",
    "upstream_model": "text",
    "input_price_per_mtok": "usd",
    "output_price_per_mtok": "usd",
    "cached_input_price_per_mtok": "usd|null",
    "price_per_image": "usd|null",
    "priority": "int",
    "min_output_tokens": "int|null",
    "max_output_tokens": "int",
    "context_window": "int|null",
}
_MODEL_EDITABLE: Final = {k: v for k, v in _MODEL_FIELDS.items() if k not in ("slug", "provider_id")}

# -- platforms and wallets (§4.3) -----------------------------------------------------------------------------


async def platforms_page(request: Request, session: ActiveSession, *, error: TollwayError | None = None) -> Response:
    m = management(request)
    pages = paging(request)
    rows, total = await m.platforms.list_platforms(pages.offset, pages.limit)
    listed = []
    for row in rows:
        wallet = api.wallet(await m.accounts.wallet(row["id"]), row["settings"])
        listed.append({"platform": api.platform(row), "wallet": wallet})
    return render(request, session, "op_platforms.html", error=error, platforms=listed, total=total, pages=pages)


@page(OPERATOR)
async def create_platform(request: Request, session: ActiveSession) -> Response:
    body = form(request).body({"name": "text", "slug": "text"})
    try:
        created = await management(request).platforms.create(body)
    except TollwayError as error:
        return await platforms_page(request, session, error=error)
    services(request).invalidate_caches()
    title = f"Platform {created.platform['name']} created"
    note = "Its platform key, shown once: copy it now. Tollway keeps only a digest."
    return await show_once(request, session, "/console", ShownOnce(title, created.raw_key, note))


async def _platform_view(
    request: Request, session: ActiveSession, platform_id: str, *, error: TollwayError | None = None
) -> Response:
    m = management(request)
    platform = await m.platforms.get(platform_id)
    wallet, recent = await m.accounts.wallet_with_recent(platform_id)
    return render(
        request,
        session,
        "op_platform.html",
        error=error,
        platform=api.platform(platform),
        wallet=api.wallet(wallet, platform["settings"]),
        transactions=[api.wallet_transaction(row) for row in recent],
        idempotency_key=new_form_key(),
    )


@page(OPERATOR)
async def platform_page(request: Request, session: ActiveSession) -> Response:
    return await _platform_view(request, session, path_id(request, "pid"))


@page(OPERATOR)
async def topup_wallet(request: Request, session: ActiveSession) -> Response:
    """The operator top-up of §4.3 under the form's one-time key (``form_keys.py``): a form sent twice credits once."""
    platform_id = path_id(request, "pid")
    submitted = form(request)
    m = management(request)
    try:
        platform = await m.platforms.get(platform_id)
        body = submitted.body({"amount_usd": "usd", "description": "text"})
        action = m.accounts.topup_action(platform_id, parse_wallet_topup(body), request_id(request))
        api_path = f"/v1/admin/platforms/{platform_id}/wallet/topup"
        key = idempotent_request("operator", "POST", api_path, idempotency_key(session, submitted), body)

        def rendered(result: tuple[Record, Record]) -> StoredResponse:
            wallet, txn = result
            content = {"wallet": api.wallet(wallet, platform["settings"]), "transaction": api.wallet_transaction(txn)}
            return StoredResponse(200, orjson.dumps(content))

        await first_answer(lambda: m.idempotency.execute(key, action, rendered))
    except TollwayError as error:
        return await _platform_view(request, session, platform_id, error=error)
    return redirect(f"/console/platforms/{platform_id}", "topped-up")


@page(OPERATOR)
async def create_platform_key(request: Request, session: ActiveSession) -> Response:
    platform_id = path_id(request, "pid")
    body = form(request).body({"name": "text"})
    try:
        _row, raw_key = await management(request).platform_keys.issue(platform_id, body)
    except TollwayError as error:
        return await _platform_view(request, session, platform_id, error=error)
    services(request).invalidate_caches()
    shown = ShownOnce("Recovery key created", raw_key, "A new platform key, shown once: copy it now.")
    return await show_once(request, session, f"/console/platforms/{platform_id}", shown)


# -- providers (§4.1) -----------------------------------------------------------------------------------------


async def _providers_view(request: Request, session: ActiveSession, error: TollwayError | None = None) -> Response:
    pages = paging(request)
    rows, total = await management(request).catalog.list_providers(None, pages.offset, pages.limit)
    providers = [api.provider(row) for row in rows]
    return render(
        request, session, "op_providers.html", error=error, providers=providers, total=total, pages=pages,
        kinds=PROVIDER_KINDS,
    )  # fmt: skip


@page(OPERATOR)
async def providers_page(request: Request, session: ActiveSession) -> Response:
    return await _providers_view(request, session)


@page(OPERATOR)
async def create_provider(request: Request, session: ActiveSession) -> Response:
    body = form(request).body({"slug": "text", "name": "text", "kind": "text", "base_url": "text"})
    try:
        await management(request).catalog.create_provider(body)
    except TollwayError as error:
        return await _providers_view(request, session, error)
    services(request).invalidate_caches()
    return redirect("/console/providers", "saved")


@page(OPERATOR)
async def update_provider(request: Request, session: ActiveSession) -> Response:
    provider_id = path_id(request, "id")
    body: dict[str, Any] = {"is_active": form(request).get("is_active") == "true"}
    try:
        await management(request).catalog.update_provider(provider_id, body)
    except TollwayError as error:
        return await _providers_view(request, session, error)
    services(request).invalidate_caches()
    return redirect("/console/providers", "saved")


# -- model rows and prices (§4.2) -----------------------------------------------------------------------------


async def models_view(request: Request, session: ActiveSession, error: TollwayError | None = None) -> Response:
    pages = paging(request)
    catalog = management(request).catalog
    rows, total = await catalog.list_models(None, None, pages.offset, pages.limit)
    providers, _ = await catalog.list_providers(None, 0, 100)
    slugs = {p.id: p.slug for p in providers}
    models = [{**api.model(row), "provider_slug": slugs.get(row.provider_id, row.provider_id)} for row in rows]
    return render(
        request, session, "op_models.html", error=error, models=models, total=total, pages=pages,
        providers=[api.provider(p) for p in providers],
    )  # fmt: skip


@page(OPERATOR)
async def create_model(request: Request, session: ActiveSession) -> Response:
    try:
        await management(request).catalog.create_model(form(request).body(_MODEL_FIELDS))
    except TollwayError as error:
        return await models_view(request, session, error)
    services(request).invalidate_caches()
    return redirect("/console/models", "saved")


async def _model_view(
    request: Request, session: ActiveSession, model_id: str, error: TollwayError | None = None
) -> Response:
    model = api.model(await management(request).catalog.get_model(model_id))
    return render(request, session, "op_model.html", error=error, model=model)


@page(OPERATOR)
async def model_page(request: Request, session: ActiveSession) -> Response:
    return await _model_view(request, session, path_id(request, "id"))


@page(OPERATOR)
async def update_model(request: Request, session: ActiveSession) -> Response:
    model_id = path_id(request, "id")
    submitted = form(request)
    body = submitted.body(_MODEL_EDITABLE)
    body["is_active"] = submitted.checked("is_active")
    try:
        await management(request).catalog.update_model(model_id, body)
    except TollwayError as error:
        return await _model_view(request, session, model_id, error)
    services(request).invalidate_caches()
    return redirect(f"/console/models/{model_id}", "saved")


# -- reconciliation (§9.6) ------------------------------------------------------------------------------------


@page(OPERATOR)
async def reconcile_page(request: Request, session: ActiveSession) -> Response:
    report = (await services(request).operations.reconcile()).body()
    return render(request, session, "op_reconcile.html", report=report)
