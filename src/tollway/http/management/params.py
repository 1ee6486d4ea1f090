"""Query and path parameters of the management API (SPEC §1.2): paging, time filters, ids in paths, and the
body reader. A malformed id in a path is an unknown object (404); a malformed query parameter is a 400 naming it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from starlette.requests import Request

from tollway.domain.fields import parse_rfc3339
from tollway.errors import InvalidRequest, NotFound
from tollway.http.body import read_json_exact, read_optional_json_exact
from tollway.http.state import services

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 100
MAX_PAGE: Final = 10**9
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DIGITS: Final = re.compile(r"[0-9]{1,12}")
NO_SUCH_ID: Final = "00000000-0000-0000-0000-000000000000"  # not a version-4 UUID: no row ever has it


@dataclass(frozen=True, slots=True)
class Paging:
    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


def paging(request: Request) -> Paging:
    page = _bounded_int(request, "page", 1, 1, MAX_PAGE)
    limit = _bounded_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return Paging(page, limit)


def _bounded_int(request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = int(raw) if _DIGITS.fullmatch(raw) else None
    if value is None or not minimum <= value <= maximum:
        raise InvalidRequest(f"{name} must be an integer from {minimum} to {maximum}.", name)
    return value


def page_body(data: list[dict[str, Any]], total: int, pages: Paging) -> dict[str, Any]:
    return {"data": data, "total": total, "page": pages.page, "limit": pages.limit}


def query_text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and "\x00" in value:  # PostgreSQL cannot compare text holding NUL
        raise InvalidRequest(f"{name} must not contain NUL characters.", name)
    return value


def query_bool(request: Request, name: str) -> bool:
    """A boolean query parameter: ``true``/``false`` (absent is false)."""
    value = request.query_params.get(name)
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise InvalidRequest(f"{name} must be true or false.", name)


def query_time(request: Request, name: str) -> datetime | None:
    """``since`` (inclusive) and ``until`` (exclusive): RFC 3339 with any offset, compared in UTC."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    moment = parse_rfc3339(raw)
    if moment is None:
        raise InvalidRequest(f"{name} must be an RFC 3339 timestamp such as 2026-05-01T00:00:00Z.", name)
    return moment


def query_id(request: Request, name: str) -> str | None:
    """An id used as a filter; one that cannot exist is kept and simply matches nothing (SPEC §15)."""
    value = request.query_params.get(name)
    if value is not None and not _UUID.fullmatch(value):
        return NO_SUCH_ID
    return value


def path_id(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if not _UUID.fullmatch(value):
        raise NotFound()
    return value


async def read_body(request: Request) -> dict[str, Any]:
    return await read_json_exact(request, services(request).settings.max_body_bytes)


async def read_optional_body(request: Request) -> dict[str, Any]:
    """For creations whose fields are all optional (API keys): no body at all means ``{}``."""
    return await read_optional_json_exact(request, services(request).settings.max_body_bytes)


def request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None
