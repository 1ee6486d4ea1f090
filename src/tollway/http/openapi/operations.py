"""What the OpenAPI document says about one route: its ``Operation`` (who may call it, its parameters, the body spec
the service validates with, its answers and the §3 errors it can give). The tables in ``http/openapi/catalog_*.py``
attach one to every ``(method, path)`` of ``http/routes.py``; ``tests/unit/test_openapi_document.py`` fails when a
served route has none, or an operation names a route nobody serves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from tollway.domain.bodies import Body
from tollway.errors import (
    AuthenticationError,
    Forbidden,
    InternalError,
    InvalidRequest,
    NotFound,
    RateLimited,
    RequestTooLarge,
    ServiceUnavailable,
    TollwayError,
    WrongKeyType,
)
from tollway.http.management.params import DEFAULT_LIMIT, MAX_LIMIT, MAX_PAGE
from tollway.http.openapi.schemas import TIME, UUID, Schema, enum

ErrorKind = type[TollwayError]


class Access(Enum):
    """Who may call a route (SPEC §2.1, §2.3), and so the security requirement of its operation."""

    PUBLIC = "public"
    OPERATOR = "operator"  # sk-admin_
    PLATFORM = "platform"  # sk-plat_ with scope manage, on its own platform
    INFERENCE = "inference"  # sk-plat_ or sk-eu_ with scope inference
    MESSAGES = "messages"  # as INFERENCE, the key also accepted as x-api-key (Anthropic's Messages API)
    END_USER = "end_user"  # sk-eu_, no scope needed


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: str  # path, query or header
    schema: Schema
    required: bool = False
    description: str | None = None

    def document(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "name": self.name,
            "in": self.where,
            "required": self.required or self.where == "path",
            "schema": self.schema,
        }
        if self.description:
            described["description"] = self.description
        return described


@dataclass(frozen=True, slots=True)
class Link:
    """An OpenAPI link from this operation's success answer to another operation (schemathesis follows them)."""

    name: str
    operation_id: str
    parameters: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Operation:
    id: str
    summary: str
    tag: str
    access: Access
    result: Schema | None = None  # the success body; None: no body (204)
    ok: int = 200
    body: Body | Schema | None = None
    body_required: bool = True
    params: tuple[Param, ...] = ()
    errors: tuple[ErrorKind, ...] = ()
    also_ok: Mapping[int, str] = field(default_factory=dict)  # other success statuses: what they mean
    media: str = "application/json"
    streams: bool = False  # answers text/event-stream with "stream": true
    links: tuple[Link, ...] = ()
    description: str | None = None

    def error_kinds(self) -> list[ErrorKind]:
        """The §3 errors this route can answer: those implied by its access, parameters and body, then its own."""
        kinds: list[ErrorKind] = []
        if self.access is not Access.PUBLIC:
            kinds += [AuthenticationError, WrongKeyType, RateLimited]
        if self.access in (Access.PLATFORM, Access.INFERENCE, Access.MESSAGES):
            kinds.append(Forbidden)
        if any(p.where == "path" for p in self.params) or self.access is Access.PLATFORM:
            kinds.append(NotFound)
        if self.body is not None or any(p.where in ("query", "header") for p in self.params):
            kinds.append(InvalidRequest)
        if self.body is not None:
            kinds.append(RequestTooLarge)
        kinds += [*self.errors, ServiceUnavailable, InternalError]
        return list(dict.fromkeys(kinds))


# -- parameters used across the API ------------------------------------------------------------------------------


def path_id(name: str, what: str) -> Param:
    return Param(name, "path", UUID, description=f"The {what}'s id (a malformed id is an unknown one: 404).")


def query(name: str, schema: Schema, description: str | None = None) -> Param:
    return Param(name, "query", schema, description=description)


PID: Final = path_id("pid", "platform")
PAGING: Final = (
    query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}),
    query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
)
TIME_RANGE: Final = (
    query("since", TIME, "RFC 3339, inclusive."),
    query("until", TIME, "RFC 3339, exclusive."),
)
IDEMPOTENCY_KEY: Final = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "pattern": "^[ -~]{1,255}$"},
    description="Replays the first answer for the same key and body (SPEC §9.7).",
)


def filter_id(name: str, what: str) -> Param:
    return query(name, UUID, f"Only {what} of this id.")


def choice(name: str, *values: str) -> Param:
    return query(name, enum(*values))
