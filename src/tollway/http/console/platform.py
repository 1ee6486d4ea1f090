"""A platform's own pages (SPEC §17.1, §5.1–§5.3, §5.7): its wallet ledger, its API keys (created keys are shown
once; revoked keys stop working at once), its LLM configs (add, rotate, deactivate: the provider key is never shown
again) and the models it can call. Every query is scoped by the signed-in key's platform."""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.console import ShownOnce
from tollway.domain.keys import KeyKind
from tollway.errors import TollwayError
from tollway.http.console.pages import CHECKOUT_NOTICES, redirect, render
from tollway.http.console.session import form, page, show_once
from tollway.http.management import render as api
from tollway.http.management.params import paging, path_id, query_text, query_time
from tollway.http.state import management, services
from tollway.services.console.sessions import ActiveSession
from tollway.services.management.accounts import WALLET_TXN_TYPES

PLATFORM: Final = KeyKind.PLATFORM


def own_platform(session: ActiveSession) -> str:
    platform_id = session.principal.platform_id
    assert platform_id is not None  # platform and end-user sessions always have one
    return platform_id


# -- wallet (§5.7) --------------------------------------------------------------------------------------------


@page(PLATFORM)
async def wallet_page(request: Request, session: ActiveSession) -> Response:
    platform_id = own_platform(session)
    m = management(request)
    pages = paging(request)
    txn_type = query_text(request, "type") or None
    rows, total = await m.accounts.transactions(
        platform_id, txn_type, query_time(request, "since"), query_time(request, "until"), pages.offset, pages.limit
    )
    platform = await m.platforms.get(platform_id)
    wallet = api.wallet(await m.accounts.wallet(platform_id), platform["settings"])
    query = f"type={txn_type}&" if txn_type else ""
    checkout = CHECKOUT_NOTICES.get(request.query_params.get("checkout", ""))
    return render(
        request, session, "pl_wallet.html", wallet=wallet, transactions=[api.wallet_transaction(r) for r in rows],
        total=total, pages=pages, types=WALLET_TXN_TYPES, chosen=txn_type or "", query=query, checkout=checkout,
    )  # fmt: skip


# -- platform API keys (§5.2) ---------------------------------------------------------------------------------


async def _keys_view(request: Request, session: ActiveSession, *, error: TollwayError | None = None) -> Response:
    pages = paging(request)
    rows, total = await management(request).platform_keys.list_keys(
        own_platform(session), "platform", None, pages.offset, pages.limit
    )
    keys = [api.api_key(row) for row in rows]
    return render(
        request, session, "pl_keys.html", error=error, keys=keys, total=total, pages=pages,
        own_key_id=session.principal.key_id,
    )  # fmt: skip


async def platform_keys_page(request: Request, session: ActiveSession) -> Response:
    return await _keys_view(request, session)


@page(PLATFORM)
async def create_platform_key(request: Request, session: ActiveSession) -> Response:
    submitted = form(request)
    body: dict[str, Any] = submitted.body({"name": "text", "expires_at": "text"})
    body["scopes"] = submitted.all("scopes")
    try:
        row, raw_key = await management(request).platform_keys.issue(own_platform(session), body)
    except TollwayError as error:
        return await _keys_view(request, session, error=error)
    services(request).invalidate_caches()
    title = f"Key {row['name'] or raw_key[:12]} created"
    shown = ShownOnce(title, raw_key, "Shown once: copy it now. Tollway keeps only a digest.")
    return await show_once(request, session, "/console/keys", shown)


@page(PLATFORM)
async def revoke_key(request: Request, session: ActiveSession) -> Response:
    """Revokes a platform or end-user key of this platform (§5.2); ``back`` names the page to return to."""
    key_id = path_id(request, "kid")
    await management(request).platform_keys.revoke(own_platform(session), key_id)
    services(request).invalidate_caches()
    back = form(request).get("back") or ""
    target = back if back.startswith("/console/end-users/") and "?" not in back else "/console/keys"
    return redirect(target, "revoked")


# -- LLM configs (§5.3) ---------------------------------------------------------------------------------------


async def _configs_view(request: Request, session: ActiveSession, error: TollwayError | None = None) -> Response:
    pages = paging(request)
    m = management(request)
    rows, total = await m.llm_configs.list_configs(own_platform(session), None, pages.offset, pages.limit)
    providers, _ = await m.catalog.list_providers(None, 0, 100)
    choices = [{"id": p.id, "slug": p.slug, "kind": p.kind.value} for p in providers if p.is_active]
    return render(
        request, session, "pl_llm_configs.html", error=error, configs=[api.llm_config(r) for r in rows],
        total=total, pages=pages, providers=choices,
    )  # fmt: skip


@page(PLATFORM)
async def llm_configs_page(request: Request, session: ActiveSession) -> Response:
    return await _configs_view(request, session)


@page(PLATFORM)
async def create_llm_config(request: Request, session: ActiveSession) -> Response:
    submitted = form(request)
    body: dict[str, Any] = submitted.body({"provider_id": "text"})
    body["api_key"] = submitted.get("api_key") or ""
    body["is_default"] = submitted.checked("is_default")
    try:
        await management(request).llm_configs.create(own_platform(session), body)
    except TollwayError as error:
        return await _configs_view(request, session, error)
    services(request).invalidate_caches()
    return redirect("/console/llm-configs", "saved")


@page(PLATFORM)
async def update_llm_config(request: Request, session: ActiveSession) -> Response:
    """One change per form: a new provider key (rotation), ``is_active`` or ``is_default``."""
    config_id = path_id(request, "id")
    submitted = form(request)
    body: dict[str, Any] = {}
    if submitted.get("api_key") is not None:
        body["api_key"] = submitted.get("api_key")
    for flag in ("is_active", "is_default"):
        if submitted.get(flag) is not None:
            body[flag] = submitted.get(flag) == "true"
    try:
        await management(request).llm_configs.update(own_platform(session), config_id, body)
    except TollwayError as error:
        return await _configs_view(request, session, error)
    services(request).invalidate_caches()
    return redirect("/console/llm-configs", "saved")


@page(PLATFORM)
async def delete_llm_config(request: Request, session: ActiveSession) -> Response:
    await management(request).llm_configs.delete(own_platform(session), path_id(request, "id"))
    services(request).invalidate_caches()
    return redirect("/console/llm-configs", "deleted")


# -- models (§7.1) --------------------------------------------------------------------------------------------


async def models_view(request: Request, session: ActiveSession) -> Response:
    listed = await services(request).models.list(own_platform(session))
    return render(request, session, "pl_models.html", models=listed["data"])
