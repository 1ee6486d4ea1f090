"""MCP calls as values and rules (SPEC §16.3): the server a call goes to, what it answered, how it failed, the month
of the free tier, the ``allowed_tools`` filter, and the shape an app takes to be priced by the one call lifecycle.
Pure: no I/O. Results are kept as the JSON the app sent, so the domain never depends on the SDK's types."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from tollway.domain.catalog import Candidate, ModelRow, Provider, ProviderKind
from tollway.domain.pricing import Prices

REQUEST_TYPE: Final = "mcp"
CONNECT_TIMEOUT_S: Final = 15.0  # connecting to an MCP server and listing its tools (§16.3)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class McpServer:
    """Where an MCP request goes and the headers it carries (the caller's credential: never logged)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class McpApp:
    """What a billed call needs of a platform's app (§16.1)."""

    id: str
    slug: str
    name: str
    server_url: str
    price_nanos: int
    allowed_tools: tuple[str, ...] | None
    oauth: bool  # an end user's OAuth connection supplies the bearer token
    external: bool = False  # a stand-in for an external server of a Responses request (its headers: the request's)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A ``tools/call`` result as the app sent it (JSON); ``is_error`` results are delivered and billed."""

    body: dict[str, Any]
    is_error: bool


class Failure(StrEnum):
    """Why an MCP request failed, and so whether the app answered (SPEC §16.3, §12)."""

    UNREACHABLE = "unreachable"  # never reached: connection, TLS, address rules, a redirect, the handshake
    UNAUTHORIZED = "unauthorized"  # the app refused the credential (HTTP 401) before serving the call
    CONNECT_TIMEOUT = "connect_timeout"  # the 15 s to connect and list
    CALL_TIMEOUT = "call_timeout"  # sent, but no answer within TOLLWAY_MCP_CALL_TIMEOUT_S
    NO_ANSWER = "no_answer"  # sent, but the connection broke or the answer was not MCP
    TOO_LARGE = "result_too_large"  # answered past TOLLWAY_MCP_MAX_RESULT_BYTES
    RPC_ERROR = "rpc_error"  # answered with a JSON-RPC error (unknown tool, bad arguments …)

    @property
    def reached(self) -> bool:
        """Whether the call reached the app (a usage row is written, at zero cost, §12)."""
        return self not in (Failure.UNREACHABLE, Failure.UNAUTHORIZED, Failure.CONNECT_TIMEOUT)


class McpCallFailed(Exception):
    """An MCP request that produced no result. ``code``/``message``: the app's JSON-RPC error for RPC_ERROR."""

    def __init__(self, failure: Failure, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message
        self.code = code


def free_month(now: datetime) -> str:
    """The UTC calendar month a call counts in for the free tier (§16.1): ``YYYY-MM``."""
    return now.astimezone(UTC).strftime("%Y-%m")


def tool_allowed(allowed: tuple[str, ...] | None, name: str) -> bool:
    return allowed is None or name in allowed


def filter_tools(listing: dict[str, Any], allowed: tuple[str, ...] | None) -> dict[str, Any]:
    """A ``tools/list`` result with only the tools in ``allowed_tools`` (all when None)."""
    tools = listing.get("tools")
    if allowed is None or not isinstance(tools, list):
        return listing
    kept = [t for t in tools if isinstance(t, dict) and t.get("name") in allowed]
    return {**listing, "tools": kept}


def app_candidate(app: McpApp, price_nanos: int) -> Candidate:
    """The app in the shape the call lifecycle prices (a row with a price per call, §9.2's per-unit rule). It is
    never dialled through the provider registry (an MCP call makes no ``attempt``); its empty provider id and
    upstream model become nulls on the usage row."""
    row = ModelRow(
        id=f"mcp-app:{app.id}",
        slug=app.slug,
        provider_id="",
        upstream_model="",
        prices=Prices(0, 0),
        price_per_image_nanos=None,
        priority=0,
        min_output_tokens=None,
        max_output_tokens=1,
        context_window=None,
        is_active=True,
        created_at=_EPOCH,
        updated_at=_EPOCH,
        price_per_request_nanos=price_nanos,
    )
    provider = Provider("", app.slug, app.name, ProviderKind.OPENAI_COMPATIBLE, app.server_url, True, _EPOCH, _EPOCH)
    return Candidate(row, provider, "")
