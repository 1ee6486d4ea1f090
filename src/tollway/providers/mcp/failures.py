"""How the MCP client's failures read (SPEC §16.3): the limit a call passed, and the app's own error messages
without the caller's credential (SPEC §15). Shared by the SDK session and the direct exchange."""

from __future__ import annotations

from tollway.domain.mcp_calls import Failure, McpCallFailed, McpServer
from tollway.providers.transport import redact


def scrubbed(message: str, server: McpServer) -> str:
    """The app's error message without the caller's credential or anything shaped like a key."""
    for name, value in server.headers.items():
        if name.lower().startswith("mcp-param-"):
            continue  # the caller's mirrored tool arguments, not a credential
        message = redact(message, value.removeprefix("Bearer ").strip() or None)
    return redact(message, None)[:512]


def too_large(limit: int) -> McpCallFailed:
    return McpCallFailed(Failure.TOO_LARGE, f"The MCP tool result exceeded the limit of {limit} bytes.")


def over_limit(what: str, seconds: float) -> str:
    return f"Timed out: {what} took longer than the limit of {seconds:g} s."


def not_public() -> McpCallFailed:
    return McpCallFailed(Failure.UNREACHABLE, "The MCP app's URL must be https on a public address.")
