"""Reading request bodies: Content-Type check, the size limit enforced while reading (SPEC §14.1), strict JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request

from tollway.errors import InvalidRequest, RequestTooLarge
from tollway.http.jsonbody import parse_json_body, parse_json_body_exact


async def read_raw(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise InvalidRequest("Requests with a body must send Content-Type: application/json.", "Content-Type")
    return await read_limited(request, limit)


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 once it passes ``limit`` bytes: a larger ``Content-Length`` before anything
    is read, a chunked body as soon as the bytes received pass the limit (nothing beyond it is ever kept)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body exceeds the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(f"The request body exceeds the limit of {limit} bytes.")
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody is left to answer; a 400 keeps it out of the error log (uvicorn drops the reply).
        raise InvalidRequest("The client closed the connection before sending the whole body.") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """Inference bodies: fast strict parse (numbers as int/float)."""
    return parse_json_body(await read_raw(request, limit))


async def read_json_exact(request: Request, limit: int) -> dict[str, Any]:
    """Management bodies: numbers with a fraction or exponent become Decimal, so money is never a binary float."""
    return parse_json_body_exact(await read_raw(request, limit))


async def read_optional_json_exact(request: Request, limit: int) -> dict[str, Any]:
    """For action routes whose body is optional (an empty body is an empty object)."""
    raw = await read_limited(request, limit)
    if not raw:
        return {}
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise InvalidRequest("Requests with a body must send Content-Type: application/json.", "Content-Type")
    return parse_json_body_exact(raw)


def disconnect_probe(request: Request) -> Callable[[], Awaitable[bool]]:
    """Whether the client has left, for settlement (SPEC §7.3). uvicorn's connection cycle records it in a flag we
    can read for free; under another server, Starlette's probe (a cancelled ``receive``, dearer) is used."""
    cycle = getattr(request.receive, "__self__", None)
    if cycle is None or not isinstance(getattr(cycle, "disconnected", None), bool):
        return request.is_disconnected

    async def gone() -> bool:
        return bool(cycle.disconnected)

    return gone
