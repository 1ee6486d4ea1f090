"""The OpenAPI 3.1 document of SPEC §18, built from the routes the app serves: each served ``(method, path)`` with
its ``Operation`` (``OPERATIONS``), whose bodies are the services' own validating ``Body`` specs. Routes outside the
JSON API are left out only through ``EXCLUDED``, each with its reason."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, Final

from starlette.routing import BaseRoute, Mount, Route

from tollway import __version__
from tollway.domain.bodies import Body
from tollway.errors import UpstreamInvalidRequest
from tollway.http.openapi import ops_operator, ops_platform, ops_public
from tollway.http.openapi.operations import Access, ErrorKind, Operation
from tollway.http.openapi.schemas import COMPONENTS, ref

OPERATIONS: Final[dict[tuple[str, str], Operation]] = {
    **ops_public.OPERATIONS,
    **ops_operator.OPERATIONS,
    **ops_platform.OPERATIONS,
}
# Served paths the document leaves out, by prefix, with the reason (tests/unit/test_openapi_document.py).
EXCLUDED: Final[dict[str, str]] = {
    "/console": "the browser console's server-rendered HTML pages and their static files (SPEC §17.1), not a JSON API",
    "/docs/assets": "the vendored viewer's static files served for /docs",
    "/v1/mcp/{slug}": "the MCP proxy speaks JSON-RPC over Streamable HTTP (SPEC §16.3), described by MCP itself",
}
_SECURITY: Final[dict[Access, list[dict[str, list[str]]]]] = {
    Access.PUBLIC: [],
    Access.OPERATOR: [{"operatorKey": []}],
    Access.PLATFORM: [{"platformKey": ["manage"]}],
    Access.INFERENCE: [{"platformKey": ["inference"]}, {"endUserKey": ["inference"]}],
    Access.MESSAGES: [
        {"platformKey": ["inference"]},
        {"endUserKey": ["inference"]},
        {"anthropicApiKey": ["inference"]},
    ],
    Access.END_USER: [{"endUserKey": []}],
}
_SECURITY_SCHEMES: Final = {
    "operatorKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator key, sk-admin_… (SPEC §2.1, §2.4): /v1/admin/*.",
    },
    "platformKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A platform key, sk-plat_…, with scopes inference and/or manage (the role names listed in "
        "each requirement): /v1/platforms/{own id}/* needs manage, inference needs inference.",
    },
    "endUserKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An end user's key, sk-eu_… (scope inference for inference): inference and /v1/me/*.",
    },
    "anthropicApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "On /v1/messages only: a platform or end-user key as Anthropic's SDK sends it.",
    },
}
_HEADERS: Final = {
    "RequestId": {
        "description": "The request's id, on every response (SPEC §3).",
        "schema": {"type": "string", "pattern": "^req_[0-9a-f]{32}$"},
    },
    "RetryAfter": {"description": "Whole seconds, at least 1.", "schema": {"type": "integer", "minimum": 1}},
}
_PARAMETER: Final = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")
_DESCRIPTION: Final = (
    "Tollway's HTTP API (SPEC v1). Request bodies are strict: unknown and read-only fields are refused with 400 "
    'invalid_request naming the field in `param`. Every error has the body `{"error": {message, type, code, '
    "param}}` (Anthropic's envelope on /v1/messages). Generated from the routes the server serves and the "
    "specs its services validate with (docs/api.md)."
)


def openapi_path(template: str) -> str:
    """Starlette's ``{slug:path}`` is OpenAPI's ``{slug}``."""
    return _PARAMETER.sub(r"{\1}", template)


def excluded(path: str) -> str | None:
    """The reason ``path`` is left out of the document, or None."""
    for prefix, reason in EXCLUDED.items():
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return reason
    return None


def served(routes: Iterable[BaseRoute]) -> Iterator[tuple[str, str]]:
    """Every ``(method, path template)`` the routes answer (HEAD, which Starlette adds to GET, aside)."""
    for route in routes:
        if isinstance(route, Route):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield method, route.path
        elif isinstance(route, Mount):
            yield "*", route.path


def build_document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, None] = {}
    for method, template in served(routes):
        operation = OPERATIONS.get((method, template))
        if operation is None:  # excluded, or a gap the walk test reports
            continue
        paths.setdefault(openapi_path(template), {})[method.lower()] = _operation(operation)
        tags[operation.tag] = None
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tollway",
            "version": __version__,
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": _SECURITY_SCHEMES,
            "headers": _HEADERS,
        },
    }


def _operation(op: Operation) -> dict[str, Any]:
    described: dict[str, Any] = {
        "operationId": op.id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": _SECURITY[op.access],
        "responses": {**_successes(op), **_errors(op)},
    }
    if op.description:
        described["description"] = op.description
    if op.params:
        described["parameters"] = [param.document() for param in op.params]
    if op.body is not None:
        schema = op.body.schema() if isinstance(op.body, Body) else op.body
        described["requestBody"] = {"required": op.body_required, "content": {"application/json": {"schema": schema}}}
    return described


def _request_id() -> dict[str, Any]:
    return {"x-request-id": {"$ref": "#/components/headers/RequestId"}}


def _successes(op: Operation) -> dict[str, Any]:
    content: dict[str, Any] | None = None
    if op.result is not None:
        content = {op.media: {"schema": op.result}}
        if op.streams:
            content["text/event-stream"] = {"schema": {"type": "string", "description": "Server-sent events."}}
    answers: dict[str, Any] = {str(op.ok): _answer("Success.", content, op)}
    for status, meaning in op.also_ok.items():
        answers[str(status)] = _answer(meaning, content if status < 300 else None, op)
    return answers


def _answer(description: str, content: dict[str, Any] | None, op: Operation) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "headers": _request_id()}
    if content is not None:
        answer["content"] = content
    if op.links:
        answer["links"] = {
            link.name: {"operationId": link.operation_id, "parameters": dict(link.parameters)} for link in op.links
        }
    return answer


def _statuses(kind: ErrorKind) -> tuple[int, ...]:
    if issubclass(kind, UpstreamInvalidRequest) and kind is UpstreamInvalidRequest:
        return (400, 413, 422)  # the provider's own status (SPEC §3)
    return (int(kind.status),)


def _errors(op: Operation) -> dict[str, Any]:
    codes: dict[int, list[str]] = {}
    for kind in op.error_kinds():
        for status in _statuses(kind):
            codes.setdefault(status, [])
            if kind.code not in codes[status]:
                codes[status].append(kind.code)
    envelope = ref("AnthropicError" if op.access is Access.MESSAGES else "Error")
    answers: dict[str, Any] = {}
    for status in sorted(codes):
        headers = _request_id()
        if status in (429, 503):
            headers["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
        answers[str(status)] = {
            "description": "code: " + ", ".join(codes[status]),
            "headers": headers,
            "content": {"application/json": {"schema": envelope}},
        }
    return answers
