"""A platform's end users (SPEC §17.1, §5.4–§5.6): list and create (the new key is shown once), and per end user its
budget (create, edit, suspend, top up), rate-limit override, keys (create: shown once; revoke) and activation.
Budget writes run through the API's Idempotency service with a key of the form, so a form sent twice applies once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollway.domain.console import ShownOnce
from tollway.domain.idempotency import StoredResponse
from tollway.domain.keys import KeyKind
from tollway.domain.platform_settings import BudgetPeriod
from tollway.errors import NotFound, TollwayError
from tollway.http.console.form_keys import first_answer, idempotency_key, new_form_key
from tollway.http.console.forms import Form
from tollway.http.console.pages import redirect, render
from tollway.http.console.platform import own_platform
from tollway.http.console.session import form, page, show_once
from tollway.http.management import render as api
from tollway.http.management.end_users import render_budget, render_budget_transaction, render_end_user
from tollway.http.management.params import paging, path_id, query_text
from tollway.http.management.rate_limits import render_override
from tollway.http.state import management, services
from tollway.services.console.sessions import ActiveSession
from tollway.services.management import budgets as budget_rules
from tollway.services.management.idempotency import idempotent_request

PLATFORM: Final = KeyKind.PLATFORM
_BUDGET_FIELDS: Final = {
    "max_usd": "usd",
    "period": "text",
    "replenish_amount": "usd|null",
    "low_balance_threshold": "usd|null",
}
_LIMIT_FIELDS: Final = {"rpm_limit": "int|null", "tpm_limit": "int|null", "rpd_limit": "int|null"}


# -- the list (§5.4) ------------------------------------------------------------------------------------------


async def _list_view(request: Request, session: ActiveSession, *, error: TollwayError | None = None) -> Response:
    pages = paging(request)
    external_id = query_text(request, "external_id") or None
    rows, total = await management(request).end_users.list_end_users(
        own_platform(session), external_id, pages.offset, pages.limit
    )
    query = f"external_id={external_id}&" if external_id else ""
    return render(
        request, session, "pl_end_users.html", error=error, end_users=[render_end_user(r) for r in rows],
        total=total, pages=pages, search=external_id or "", query=query,
    )  # fmt: skip


@page(PLATFORM)
async def end_users_page(request: Request, session: ActiveSession) -> Response:
    return await _list_view(request, session)


@page(PLATFORM)
async def create_end_user(request: Request, session: ActiveSession) -> Response:
    body = form(request).body({"external_id": "text", "display_name": "text"})
    try:
        creation, raw_key = await management(request).end_users.create(own_platform(session), body)
    except TollwayError as error:
        return await _list_view(request, session, error=error)
    services(request).invalidate_caches()
    user = creation.end_user
    title = f"Existing end user {user['external_id']}: a fresh key" if not creation.created else None
    shown = ShownOnce(
        title or f"End user {user['external_id']} created",
        raw_key,
        "Its end-user key, shown once: copy it now.",
        link=f"/console/end-users/{user['id']}",
        link_text=f"Open {user['external_id']}",
    )
    return await show_once(request, session, "/console/end-users", shown)


# -- one end user ---------------------------------------------------------------------------------------------


async def _detail_view(
    request: Request,
    session: ActiveSession,
    end_user_id: str,
    *,
    error: TollwayError | None = None,
) -> Response:
    platform_id = own_platform(session)
    m = management(request)
    end_user = render_end_user(await m.end_users.get(platform_id, end_user_id))
    try:
        budget: dict[str, Any] | None = render_budget(await m.budgets.get(platform_id, end_user_id))
        rows, _ = await m.budgets.transactions(platform_id, end_user_id, None, None, None, 0, 5)
        ledger = [render_budget_transaction(row) for row in rows]
    except NotFound:
        budget, ledger = None, []
    try:
        override: dict[str, Any] | None = render_override(await m.rate_limits.get(platform_id, end_user_id))
    except NotFound:
        override = None
    keys, _ = await m.platform_keys.list_keys(platform_id, "end_user", end_user_id, 0, 100)
    return render(
        request,
        session,
        "pl_end_user.html",
        error=error,
        end_user=end_user,
        budget=budget,
        ledger=ledger,
        override=override,
        keys=[api.api_key(row) for row in keys],
        periods=[period.value for period in BudgetPeriod],
        idempotency={name: new_form_key() for name in ("budget", "suspend", "topup")},
    )


@page(PLATFORM)
async def end_user_page(request: Request, session: ActiveSession) -> Response:
    return await _detail_view(request, session, path_id(request, "id"))


def _end_user_action(
    run: Callable[[Request, ActiveSession, str, Form], Any],
) -> Callable[[Request], Any]:
    """A POST on one end user: its §2.3 checks (a live end user of this platform, else 404), the action, then back to
    its page; a service error is shown there as its §3 message."""

    @page(PLATFORM)
    async def endpoint(request: Request, session: ActiveSession) -> Response:
        end_user_id = path_id(request, "id")
        await management(request).end_users.get(own_platform(session), end_user_id)
        try:
            shown = await run(request, session, end_user_id, form(request))
        except TollwayError as error:
            return await _detail_view(request, session, end_user_id, error=error)
        if shown is not None:
            return await show_once(request, session, f"/console/end-users/{end_user_id}", shown)
        return redirect(f"/console/end-users/{end_user_id}", "saved")

    endpoint.__name__ = run.__name__
    return endpoint


def _budget_path(platform_id: str, end_user_id: str, tail: str = "") -> str:
    return f"/v1/platforms/{platform_id}/end-users/{end_user_id}/budget{tail}"


def _stored(_result: object) -> StoredResponse:
    return StoredResponse(200, orjson.dumps({}))


async def _patch_budget(request: Request, platform_id: str, end_user_id: str, body: dict[str, Any], key: str) -> None:
    m = management(request)
    action = m.budgets.update(platform_id, end_user_id, budget_rules.parse_patch(body))
    idem = idempotent_request(platform_id, "PATCH", _budget_path(platform_id, end_user_id), key, body)
    await first_answer(
        lambda: m.idempotency.execute(idem, action, lambda b: StoredResponse(200, orjson.dumps(render_budget(b))))
    )


@_end_user_action
async def save_budget(request: Request, session: ActiveSession, end_user_id: str, submitted: Form) -> None:
    """Creates the budget (§5.5 POST) or changes it (PATCH) with the form's values."""
    platform_id = own_platform(session)
    body = submitted.body(_BUDGET_FIELDS)
    body["auto_replenish"] = submitted.checked("auto_replenish")
    m = management(request)
    try:
        await m.budgets.get(platform_id, end_user_id)
    except NotFound:
        body = {k: v for k, v in body.items() if v is not None}
        await m.budgets.create(platform_id, end_user_id, budget_rules.parse_spec(body))
        return
    await _patch_budget(request, platform_id, end_user_id, body, idempotency_key(session, submitted))


@_end_user_action
async def set_suspension(request: Request, session: ActiveSession, end_user_id: str, submitted: Form) -> None:
    body = {"is_suspended": submitted.get("is_suspended") == "true"}
    await _patch_budget(request, own_platform(session), end_user_id, body, idempotency_key(session, submitted))


@_end_user_action
async def topup_budget(request: Request, session: ActiveSession, end_user_id: str, submitted: Form) -> None:
    platform_id = own_platform(session)
    body = submitted.body({"amount_usd": "usd", "reason": "text"})
    m = management(request)
    action = m.budgets.topup(platform_id, end_user_id, budget_rules.parse_topup(body))
    path = _budget_path(platform_id, end_user_id, "/topup")
    idem = idempotent_request(platform_id, "POST", path, idempotency_key(session, submitted), body)
    await first_answer(lambda: m.idempotency.execute(idem, action, _stored))


@_end_user_action
async def put_rate_limits(request: Request, session: ActiveSession, end_user_id: str, submitted: Form) -> None:
    body = submitted.body(_LIMIT_FIELDS)
    await management(request).rate_limits.put(own_platform(session), end_user_id, body)
    services(request).invalidate_caches()


@_end_user_action
async def delete_rate_limits(request: Request, session: ActiveSession, end_user_id: str, _submitted: Form) -> None:
    await management(request).rate_limits.delete(own_platform(session), end_user_id)
    services(request).invalidate_caches()


@_end_user_action
async def set_active(request: Request, session: ActiveSession, end_user_id: str, submitted: Form) -> None:
    body = {"is_active": submitted.get("is_active") == "true"}
    await management(request).end_users.update(own_platform(session), end_user_id, body)
    services(request).invalidate_caches()


@_end_user_action
async def create_key(request: Request, session: ActiveSession, end_user_id: str, submitted: Form) -> ShownOnce:
    body = submitted.body({"name": "text", "expires_at": "text"})
    _row, raw_key = await management(request).end_users.issue_key(own_platform(session), end_user_id, body)
    services(request).invalidate_caches()
    return ShownOnce("Key created", raw_key, "The end user's new key, shown once: copy it now.")


@page(PLATFORM)
async def delete_end_user(request: Request, session: ActiveSession) -> Response:
    await management(request).end_users.delete(own_platform(session), path_id(request, "id"))
    services(request).invalidate_caches()
    return redirect("/console/end-users", "deleted")
