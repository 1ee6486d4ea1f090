"""MCP apps and end users' OAuth connections as values and rules (SPEC §16.1, §16.2): auth types, origins, what a
sealed secret is bound to, state digests, and when an access token is due for a refresh. Pure: no I/O."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

APP_SLUG: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
STATE_TTL: Final = timedelta(minutes=10)
# An access token this close to its expiry is refreshed before use, so that it does not lapse in flight.
REFRESH_SKEW: Final = timedelta(seconds=30)
# How long one refresher holds the connection row's lease; others wait for it (or take over once it lapses).
REFRESH_LEASE: Final = timedelta(seconds=20)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class AuthType(StrEnum):
    NONE = "none"
    HEADER = "header"
    OAUTH2 = "oauth2"


class ConnectionStatus(StrEnum):
    CONNECTED = "connected"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class OAuthApp:
    """What the OAuth client needs of an app; ``client_secret`` is opened from its sealed form only for a call."""

    authorize_url: str
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...]
    revocation_url: str | None


@dataclass(frozen=True, slots=True)
class TokenSet:
    """A token endpoint's answer. ``expires_at`` None: the server gave no lifetime (used until refused)."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None
    scopes: tuple[str, ...]


class OAuthRefused(Exception):
    """The authorization server answered with an OAuth error (``invalid_grant`` …): the grant is no good."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class OAuthUnreachable(Exception):
    """The authorization server could not be reached or answered something that is not OAuth (5xx, garbage)."""


class BadOrigin(ValueError):
    """Not an origin ``scheme://host[:port]``; the message says what is wrong."""


def normalise_origin(text: str) -> str:
    """``scheme://host[:port]`` in lower case, the scheme's default port dropped; ``BadOrigin`` otherwise."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise BadOrigin("must be an origin such as https://app.example.com (a valid host and port).") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise BadOrigin("must use http or https.")
    if "@" in parts.netloc or not parts.hostname:
        raise BadOrigin("must be scheme://host[:port] without credentials.")
    if parts.path not in ("", "/") or parts.query or parts.fragment or text.endswith(("?", "#")):
        raise BadOrigin("must be scheme://host[:port] without a path, query or fragment.")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def origin_of(url: str) -> str | None:
    """The normalised origin of an absolute http(s) URL, or None when it has none."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
            return None
        return normalise_origin(f"{parts.scheme}://{parts.netloc}")
    except (BadOrigin, ValueError):
        return None


def app_secret_context(platform_id: str, app_id: str) -> str:
    """What an app's sealed credential (header value or client secret) is bound to."""
    return f"{platform_id}/mcp-app/{app_id}"


def connection_context(platform_id: str, app_id: str, end_user_id: str) -> str:
    """What an end user's sealed tokens are bound to: moved to another row, they do not open."""
    return f"{platform_id}/mcp-connection/{app_id}/{end_user_id}"


def state_context(platform_id: str, state_digest: str) -> str:
    return f"{platform_id}/mcp-state/{state_digest}"


def new_state() -> str:
    """An unguessable single-use ``state`` (256 bits)."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """A PKCE code verifier (RFC 7636 §4.1: 43–128 unreserved characters); 64 here."""
    return secrets.token_urlsafe(48)


def state_digest(state: str) -> str:
    """Only the digest of a state is stored: a database reader cannot complete someone's connection."""
    return hashlib.sha256(b"tollway/mcp-state/v1:" + state.encode("utf-8", "surrogatepass")).hexdigest()


def refresh_due(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at - REFRESH_SKEW <= now


def token_expiry(expires_in: object, now: datetime) -> datetime | None:
    """``expires_in`` seconds from a token response (RFC 6749 §5.1), or None when absent or malformed."""
    if isinstance(expires_in, bool):
        return None
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, int | float) and 0 <= expires_in <= 10 * 365 * 86400:
        return now + timedelta(seconds=float(expires_in))
    return None


def granted_scopes(scope: object, asked: tuple[str, ...]) -> tuple[str, ...]:
    """The scopes the token response granted (space-separated ``scope``), else those asked for (RFC 6749 §5.1)."""
    if isinstance(scope, str) and scope.strip():
        return tuple(scope.split())
    return asked
