"""Usage logs in the console (SPEC §17.1, §12): the platform's rows with the filters of ``GET
/v1/platforms/{pid}/logs`` (model, end user, status, request type, dates) and their CSV export, streamed page by page
through the same service; and an end user's own rows, as ``GET /v1/me/usage`` shows them.

Dates may be given as days (``2026-12-01``): ``since`` is then that day's start and ``until`` the start of the day
after (so the day itself is included), in UTC; the page shows the equivalent API query."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tollway.domain.clock import rfc3339, utcnow
from tollway.domain.fields import parse_rfc3339
from tollway.domain.keys import KeyKind
from tollway.errors import InvalidRequest
from tollway.http.console.pages import plain, render
from tollway.http.console.platform import own_platform
from tollway.http.console.security import secured
from tollway.http.console.session import page
from tollway.http.management import render as api
from tollway.http.management.end_users import render_end_user
from tollway.http.management.params import MAX_LIMIT, paging, query_id, query_text
from tollway.http.me import HIDDEN_USAGE_FIELDS
from tollway.http.state import management
from tollway.services.console.sessions import ActiveSession
from tollway.services.management.accounts import LOG_REQUEST_TYPES, LOG_STATUSES, LogFilters

_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
EXPORT_MAX_ROWS: Final = 1_000_000


def _columns(hidden: tuple[str, ...] = ()) -> list[str]:
    """The CSV header: the §12 fields in the API's order (rendered from a row of nulls, so a new field shows up)."""
    return [name for name in api.usage_log(defaultdict(lambda: None)) if name not in hidden]


def _time(request: Request, name: str) -> datetime | None:
    raw = query_text(request, name)
    if not raw:
        return None
    if _DAY.fullmatch(raw):
        moment = parse_rfc3339(f"{raw}T00:00:00Z")
        if moment is not None and name == "until":
            moment += timedelta(days=1)
    else:
        moment = parse_rfc3339(raw)
    if moment is None:
        raise InvalidRequest(f"{name} must be a day (2026-05-01) or an RFC 3339 timestamp.", name)
    return moment


def _filters(request: Request, end_user_id: str | None) -> LogFilters:
    return LogFilters(
        model=query_text(request, "model") or None,
        end_user_id=end_user_id,
        status=query_text(request, "status") or None,
        request_type=query_text(request, "request_type") or None,
        since=_time(request, "since"),
        until=_time(request, "until"),
    )


def _query(filters: LogFilters) -> dict[str, str]:
    """The filters as the API's query parameters."""
    values = {
        "model": filters.model,
        "end_user_id": filters.end_user_id,
        "status": filters.status,
        "request_type": filters.request_type,
        "since": rfc3339(filters.since),
        "until": rfc3339(filters.until),
    }
    return {name: value for name, value in values.items() if value}


def _form_values(request: Request) -> dict[str, str]:
    names = ("model", "end_user_id", "status", "request_type", "since", "until")
    return {name: request.query_params.get(name, "") for name in names}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return plain(value)


def _csv_lines(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


async def _csv(columns: list[str], pages: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    yield _csv_lines([columns])
    async for rows in pages:
        yield _csv_lines([[_cell(row[name]) for name in columns] for row in rows])


def _csv_response(body: AsyncIterator[bytes], name: str) -> Response:
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'}
    return secured(StreamingResponse(body, media_type="text/csv; charset=utf-8", headers=headers))


# -- the platform's logs (§5.7) -------------------------------------------------------------------------------


@page(KeyKind.PLATFORM)
async def logs_page(request: Request, session: ActiveSession) -> Response:
    platform_id = own_platform(session)
    m = management(request)
    pages = paging(request)
    filters = _filters(request, query_id(request, "end_user_id") if query_text(request, "end_user_id") else None)
    rows, total = await m.accounts.usage_logs(platform_id, filters, pages.offset, pages.limit)
    users, _ = await m.end_users.list_end_users(platform_id, None, 0, MAX_LIMIT)
    names = {user["id"]: user["external_id"] for user in users}
    query = urlencode(_query(filters))
    return render(
        request, session, "pl_logs.html", logs=[api.usage_log(row) for row in rows], total=total, pages=pages,
        end_users=[render_end_user(u) for u in users], names=names, statuses=LOG_STATUSES,
        request_types=LOG_REQUEST_TYPES, values=_form_values(request), api_query=query,
        page_query=f"{query}&" if query else "", platform_id=platform_id,
    )  # fmt: skip


@page(KeyKind.PLATFORM)
async def logs_csv(request: Request, session: ActiveSession) -> Response:
    """Every row of the filtered log (newest first, as the API pages it), streamed 100 rows per query."""
    platform_id = own_platform(session)
    accounts = management(request).accounts
    filters = _filters(request, query_id(request, "end_user_id") if query_text(request, "end_user_id") else None)
    await accounts.usage_logs(platform_id, filters, 0, 1)  # a bad filter is a 400 page before streaming starts

    async def pages() -> AsyncIterator[list[dict[str, Any]]]:
        offset = 0
        while offset < EXPORT_MAX_ROWS:
            rows, total = await accounts.usage_logs(platform_id, filters, offset, MAX_LIMIT)
            if not rows:
                return
            yield [api.usage_log(row) for row in rows]
            offset += len(rows)
            if offset >= total:
                return

    return _csv_response(_csv(_columns(), pages()), "tollway-usage")


# -- an end user's own usage (§6) -----------------------------------------------------------------------------


def _own_row(row: Any) -> dict[str, Any]:
    body = api.usage_log(row)
    for name in HIDDEN_USAGE_FIELDS:
        del body[name]
    return body


def _end_user_owner(session: ActiveSession) -> tuple[str, str]:
    principal = session.principal
    assert principal.platform_id is not None and principal.end_user_id is not None  # an end-user session
    return principal.platform_id, principal.end_user_id


@page(KeyKind.END_USER)
async def usage_page(request: Request, session: ActiveSession) -> Response:
    platform_id, end_user_id = _end_user_owner(session)
    pages = paging(request)
    filters = _filters(request, end_user_id)  # only the caller's own rows, whatever the query says (§15)
    rows, total = await management(request).accounts.usage_logs(platform_id, filters, pages.offset, pages.limit)
    query = {k: v for k, v in _query(filters).items() if k != "end_user_id"}
    encoded = urlencode(query)
    return render(
        request, session, "eu_usage.html", logs=[_own_row(row) for row in rows], total=total, pages=pages,
        statuses=LOG_STATUSES, request_types=LOG_REQUEST_TYPES, values=_form_values(request),
        api_query=encoded, page_query=f"{encoded}&" if encoded else "",
    )  # fmt: skip


@page(KeyKind.END_USER)
async def usage_csv(request: Request, session: ActiveSession) -> Response:
    platform_id, end_user_id = _end_user_owner(session)
    accounts = management(request).accounts
    filters = _filters(request, end_user_id)
    await accounts.usage_logs(platform_id, filters, 0, 1)

    async def pages() -> AsyncIterator[list[dict[str, Any]]]:
        offset = 0
        while offset < EXPORT_MAX_ROWS:
            rows, total = await accounts.usage_logs(platform_id, filters, offset, MAX_LIMIT)
            if not rows:
                return
            yield [_own_row(row) for row in rows]
            offset += len(rows)
            if offset >= total:
                return

    return _csv_response(_csv(_columns(HIDDEN_USAGE_FIELDS), pages()), "tollway-my-usage")
