"""The MCP proxy's fast path for its hot method (SPEC §16.3, issue 16): a POST carrying one ``tools/call`` request at a
protocol version the SDK serves is answered here without building the SDK's per-request transport, server session
and task group, which cost more than the rest of a billed call together.

Only the envelope and the answer's framing are Tollway's; the messages are checked and shaped with the SDK's own
per-version types (``mcp_types.methods``), as its request kernel does: the params validated for the version (-32602
otherwise), the same handler as the SDK path (``McpProxy.call_tool``), and the result sieved by the version's result
type (fields the version does not know dropped), with ``resultType`` and the ``serverInfo`` stamp on 2026-07-28.
Everything this module does not recognise goes to the SDK unchanged, body included:
``initialize``, ``tools/list`` and the other methods, notifications, GET and DELETE, batches, malformed bodies,
unknown or mismatched versions, duplicated routing headers. What the fast path answers:

- **handshake versions** (no ``MCP-Protocol-Version`` header, which the transport reads as 2025-03-26, or one of
  2024-11-05 … 2025-11-25): the stateless transport's JSON answer, HTTP 200 for results and JSON-RPC errors alike;
- **2026-07-28** (the header names it and the envelope in ``params._meta`` passes the SDK's own classification,
  headers included): the single-exchange answer, HTTP status from the SDK's table (400 for -32602 and -32020, 404
  for -32601). ``Mcp-Param-*`` headers are checked against the tool's known schema by ``McpProxy.call_tool``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import mcp_types as types
import orjson
from mcp.server.streamable_http import check_accept_headers
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundModernRoute,
    classify_inbound_request,
    find_duplicated_routing_header,
)
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    INTERNAL_ERROR,
    METHOD_NOT_FOUND,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
    ErrorData,
    JSONRPCRequest,
)
from mcp_types import methods as wire
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import Receive, Send

log = logging.getLogger("tollway.mcp")
METHOD = "tools/call"
_JSON = [(b"content-type", b"application/json")]


@dataclass(frozen=True, slots=True)
class Envelope:
    """A ``tools/call`` the fast path answers: its request, the version it speaks, and the client's envelope."""

    request: JSONRPCRequest
    version: str
    modern: bool
    client_info: Any = None
    client_capabilities: Any = None


def recognise(request: Request, body: bytes) -> Envelope | None:
    """The ``tools/call`` in this POST if the fast path answers it exactly as the SDK would, else None."""
    if request.method != "POST" or not check_accept_headers(request)[0]:
        return None
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return None
    if find_duplicated_routing_header(request.headers.items()) is not None:
        return None
    header = request.headers.get(MCP_PROTOCOL_VERSION_HEADER)
    modern = header in MODERN_PROTOCOL_VERSIONS
    if header is not None and not modern and header not in HANDSHAKE_PROTOCOL_VERSIONS:
        return None
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(decoded, dict) or decoded.get("method") != METHOD or "id" not in decoded:
        return None
    try:
        message = JSONRPCRequest.model_validate(decoded)
    except ValidationError:
        return None
    meta = (message.params or {}).get("_meta")
    if not modern:
        if isinstance(meta, Mapping) and PROTOCOL_VERSION_META_KEY in meta:
            return None  # the 2026-07-28 envelope on a handshake-era request: the SDK refuses it
        return Envelope(message, header or DEFAULT_NEGOTIATED_VERSION, False)
    verdict = classify_inbound_request(decoded, headers=dict(request.headers))
    if not isinstance(verdict, InboundModernRoute):
        return None  # the SDK answers the rejection
    return Envelope(message, verdict.protocol_version, True, verdict.client_info, verdict.client_capabilities)


Call = Callable[[types.CallToolRequestParams], Awaitable[dict[str, Any]]]


async def answer(envelope: Envelope, send: Send, call: Call, server_info: dict[str, Any]) -> None:
    """Validates the params for the version, runs ``call`` and writes the JSON-RPC answer as the SDK's transport
    would, the result shaped for the version (``server_info``: the stamp a 2026-07-28 result carries)."""
    message = envelope.request
    status = 200
    try:
        params = message.params
        try:
            wire.validate_client_request(METHOD, envelope.version, params)
        except KeyError:
            raise MCPError(METHOD_NOT_FOUND, "Method not found", METHOD) from None
        typed = types.CallToolRequestParams.model_validate({} if params is None else params, by_name=False)
        result = _shaped(envelope, await call(typed), server_info)
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message.id, "result": result}
    except Exception as exc:
        error = handler_exception_to_error_data(exc)
        if error is None:
            log.exception("MCP proxy fast path failed")
            error = ErrorData(code=INTERNAL_ERROR, message="Internal server error")
        if envelope.modern:
            status = ERROR_CODE_HTTP_STATUS.get(error.code, 200)
        dumped = error.model_dump(by_alias=True, mode="json", exclude_none=True)
        reply = {"jsonrpc": "2.0", "id": message.id, "error": dumped}
    body = orjson.dumps(reply)
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _shaped(envelope: Envelope, result: dict[str, Any], server_info: dict[str, Any]) -> dict[str, Any]:
    """The result as the SDK's kernel puts it on the wire for the version: sieved by the version's own result type
    (fields it does not know dropped), and on 2026-07-28 with ``resultType`` and the ``serverInfo`` stamp."""
    try:
        shaped = wire.serialize_server_result(METHOD, envelope.version, result)
    except ValidationError:
        log.exception("the MCP app's tool result does not fit protocol version %s", envelope.version)
        raise MCPError(INTERNAL_ERROR, "Handler returned an invalid result") from None
    if envelope.modern:
        shaped.setdefault("resultType", "complete")
        meta = shaped.get("_meta")
        if meta is None:
            shaped["_meta"] = {SERVER_INFO_META_KEY: server_info}
        elif isinstance(meta, dict) and meta.get(SERVER_INFO_META_KEY) is None:
            shaped["_meta"] = {**meta, SERVER_INFO_META_KEY: server_info}
    return shaped


def replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the SDK after the body was read here: the body once, then the client's own messages."""
    pending = [body]

    async def replay() -> dict[str, Any]:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return dict(await receive())

    return replay
