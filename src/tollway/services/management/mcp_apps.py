"""A platform's MCP apps (SPEC §16.1): strict bodies, the URL rules of §11.5 for every URL, the three kinds of
``auth``, the price per call (§9.1), and secrets (a header value, an OAuth client secret) sealed to the platform and
app and never returned. Also the platform's view of its end users' connections (never tokens)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from tollway.domain import fields as f
from tollway.domain.bodies import Body, Boolean, Custom, Field, Text, Usd, checked_elsewhere
from tollway.domain.clock import utcnow
from tollway.domain.conflicts import Duplicate
from tollway.domain.ids import new_id
from tollway.domain.mcp import APP_SLUG, AuthType, app_secret_context
from tollway.domain.ports.mcp import McpAppRepository
from tollway.domain.records import Record
from tollway.domain.sealing import Sealer
from tollway.errors import InvalidRequest, NotFound
from tollway.services.management.public_urls import PUBLIC_URL, public_url
from tollway.services.management.webhooks import Resolver, resolve_host

HEADER_NAME: Final = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
TOOL_NAME_MAX: Final = 128
TOOLS_MAX: Final = 256
SCOPES_MAX: Final = 64
DEFAULT_PRICE_NANOS: Final = 1_000_000  # $0.001 per call
_READ_ONLY: Final = ("id", "platform_id", "has_secret", "created_at", "updated_at")
_AUTH_KEYS: Final = {
    AuthType.NONE: ("type",),
    AuthType.HEADER: ("type", "name", "value"),
    AuthType.OAUTH2: ("type", "authorize_url", "token_url", "client_id", "client_secret", "scopes", "revocation_url"),
}
_NOT_FOUND: Final = "No MCP app with this id."


class _Auth:
    """A parsed ``auth``: its type, the stored non-secret part, and the secret (None: none, or keep the stored one)."""

    def __init__(self, kind: AuthType, config: dict[str, Any], secret: str | None) -> None:
        self.kind, self.config, self.secret = kind, config, secret


class McpApps:
    def __init__(
        self, store: McpAppRepository, sealer: Sealer, *, allow_private: bool, resolver: Resolver = resolve_host
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._allow_private = allow_private
        self._resolve = resolver

    async def create(self, platform_id: str, body: Mapping[str, Any]) -> Record:
        spec = APP_BODY
        spec.check(body)
        slug = spec.read(body, "slug")
        name = spec.read(body, "name")
        server_url = await self._url(spec.read(body, "server_url"), "server_url")
        auth = await self._auth(spec.read(body, "auth"), keep_secret=False)
        price = spec.read(body, "price_per_call_usd")
        tools = spec.read(body, "allowed_tools")
        is_active = spec.read(body, "is_active")
        now, app_id = utcnow(), new_id()
        values = {
            "id": app_id,
            "platform_id": platform_id,
            "slug": slug,
            "name": name,
            "server_url": server_url,
            "auth_type": auth.kind.value,
            "auth_config": auth.config,
            "secret_sealed": self._seal(auth.secret, platform_id, app_id),
            "price_per_call_nanos": price,
            "allowed_tools": tools,
            "is_active": is_active,
            "created_at": now,
            "updated_at": now,
        }
        try:
            return await self._store.create(values)
        except Duplicate:
            raise InvalidRequest(f"An MCP app with slug '{slug}' already exists on this platform.", "slug") from None

    async def list_apps(self, platform_id: str, offset: int, limit: int) -> tuple[list[Record], int]:
        return await self._store.list_apps(platform_id, offset, limit)

    async def get(self, platform_id: str, app_id: str) -> Record:
        row = await self._store.get(platform_id, app_id)
        if row is None:
            raise NotFound(_NOT_FOUND)
        return row

    async def update(self, platform_id: str, app_id: str, body: Mapping[str, Any]) -> Record:
        current = await self.get(platform_id, app_id)
        spec = APP_PATCH
        spec.check(body)
        values: dict[str, Any] = {}
        if "slug" in body:
            values["slug"] = spec.read(body, "slug")
        if "name" in body:
            values["name"] = spec.read(body, "name")
        if "server_url" in body:
            values["server_url"] = await self._url(spec.read(body, "server_url"), "server_url")
        if "auth" in body:
            # The stored secret is kept when the type stays the same and the PATCH leaves the secret out.
            auth = await self._auth(body["auth"], keep_secret=True, current=AuthType(current["auth_type"]))
            values["auth_type"], values["auth_config"] = auth.kind.value, auth.config
            if auth.kind is AuthType.NONE or auth.secret is not None:
                values["secret_sealed"] = self._seal(auth.secret, platform_id, app_id)
        if "price_per_call_usd" in body:
            values["price_per_call_nanos"] = spec.read(body, "price_per_call_usd")
        if "allowed_tools" in body:
            values["allowed_tools"] = spec.read(body, "allowed_tools")
        if "is_active" in body:
            values["is_active"] = spec.read(body, "is_active")
        try:
            row = await self._store.update(platform_id, app_id, values, utcnow())
        except Duplicate:
            taken = values.get("slug")
            raise InvalidRequest(f"An MCP app with slug '{taken}' already exists on this platform.", "slug") from None
        if row is None:
            raise NotFound(_NOT_FOUND)
        return row

    async def delete(self, platform_id: str, app_id: str) -> None:
        if not await self._store.delete(platform_id, app_id):
            raise NotFound(_NOT_FOUND)

    async def connections(
        self, platform_id: str, end_user_id: str | None, offset: int, limit: int
    ) -> tuple[list[Record], int]:
        return await self._store.connections(platform_id, end_user_id, offset, limit)

    # -- parsing --------------------------------------------------------------------------------------------------

    async def _url(self, value: object, param: str) -> str:
        return await public_url(value, param, allow_private=self._allow_private, resolve=self._resolve)

    async def _auth(self, value: object, *, keep_secret: bool, current: AuthType | None = None) -> _Auth:
        body = f.as_object(value, "auth")
        raw_type = f.required(body, "type", "auth")
        if not isinstance(raw_type, str) or raw_type not in _AUTH_KEYS:
            raise InvalidRequest("auth.type must be one of none, header, oauth2.", "auth.type")
        kind = AuthType(raw_type)
        f.check_keys(body, _AUTH_KEYS[kind], prefix="auth")
        may_keep = keep_secret and current is kind
        if kind is AuthType.NONE:
            return _Auth(kind, {}, None)
        if kind is AuthType.HEADER:
            name = f.as_str(f.required(body, "name", "auth"), "auth.name", max_len=64, pattern=HEADER_NAME)
            secret = _secret(body, "value", may_keep)
            return _Auth(kind, {"name": name}, secret)
        config = {
            "authorize_url": await self._url(f.required(body, "authorize_url", "auth"), "auth.authorize_url"),
            "token_url": await self._url(f.required(body, "token_url", "auth"), "auth.token_url"),
            "client_id": f.as_str(f.required(body, "client_id", "auth"), "auth.client_id", max_len=255),
            "scopes": _scopes(f.required(body, "scopes", "auth")),
            "revocation_url": None,
        }
        if body.get("revocation_url") is not None:
            config["revocation_url"] = await self._url(body["revocation_url"], "auth.revocation_url")
        return _Auth(kind, config, _secret(body, "client_secret", may_keep))

    def _seal(self, secret: str | None, platform_id: str, app_id: str) -> bytes | None:
        return None if secret is None else self._sealer.seal(secret, app_secret_context(platform_id, app_id))


def _secret(body: Mapping[str, Any], name: str, may_keep: bool) -> str | None:
    """Checked without echoing the value: error messages never carry a secret (SPEC §15)."""
    param = f"auth.{name}"
    if name not in body:
        if may_keep:
            return None
        raise InvalidRequest(f"{param} is required.", param)
    value = body[name]
    if not isinstance(value, str) or not 1 <= len(value) <= 4096 or not value.isprintable():
        raise InvalidRequest(f"{param} must be a string of 1 to 4096 printable characters.", param)
    return value


def _scopes(value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > SCOPES_MAX:
        raise InvalidRequest(f"auth.scopes must be a list of at most {SCOPES_MAX} scope strings.", "auth.scopes")
    chosen: list[str] = []
    for index, item in enumerate(value):
        param = f"auth.scopes[{index}]"
        scope = f.as_str(item, param, max_len=200)
        if any(ch.isspace() or ch in '"\\' for ch in scope):
            raise InvalidRequest(f"{param} must not contain spaces, quotes or backslashes (RFC 6749 §3.3).", param)
        if scope in chosen:  # as API keys' scopes (SPEC §2.1): a repeat is a mistake worth naming
            raise InvalidRequest(f"{param} repeats {scope!r}: name each scope once.", param)
        chosen.append(scope)
    return chosen


def _tools(value: object, param: str = "allowed_tools") -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > TOOLS_MAX:
        raise InvalidRequest(
            f"allowed_tools must be null or a list of at most {TOOLS_MAX} tool names.", "allowed_tools"
        )
    chosen: list[str] = []
    for index, item in enumerate(value):
        param = f"allowed_tools[{index}]"
        name = f.as_str(item, param, max_len=TOOL_NAME_MAX)
        if name in chosen:  # as API keys' scopes (SPEC §2.1): a repeat is a mistake worth naming, never merged
            raise InvalidRequest(f"{param} repeats {name!r}: name each tool once.", param)
        chosen.append(name)
    return chosen


_SECRET: Final = {"type": "string", "minLength": 1, "maxLength": 4096, "writeOnly": True}
_URL_SCHEMA: Final = PUBLIC_URL.schema()
AUTH_SCHEMA: Final = {
    "oneOf": [
        {
            "type": "object",
            "properties": {"type": {"const": "none"}},
            "required": ["type"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "type": {"const": "header"},
                "name": {"type": "string", "pattern": f"^{HEADER_NAME.pattern}$"},
                "value": _SECRET,
            },
            "required": ["type", "name"],
            "additionalProperties": False,
            "description": "value is required on creation; a PATCH of the same type may leave it out to keep it.",
        },
        {
            "type": "object",
            "properties": {
                "type": {"const": "oauth2"},
                "authorize_url": _URL_SCHEMA,
                "token_url": _URL_SCHEMA,
                "client_id": {"type": "string", "minLength": 1, "maxLength": 255},
                "client_secret": _SECRET,
                "scopes": {
                    "type": "array",
                    "maxItems": SCOPES_MAX,
                    "uniqueItems": True,
                    "items": {"type": "string", "minLength": 1, "maxLength": 200},
                },
                "revocation_url": {"anyOf": [_URL_SCHEMA, {"type": "null"}]},
            },
            "required": ["type", "authorize_url", "token_url", "client_id", "scopes"],
            "additionalProperties": False,
        },
    ]
}
APP_BODY: Final = Body(
    Field("slug", Text(63, pattern=APP_SLUG), required=True, description="Unique per platform."),
    Field("name", Text(100), required=True),
    Field("server_url", PUBLIC_URL, required=True, description="The app's MCP server (Streamable HTTP), SPEC §11.5."),
    Field("auth", checked_elsewhere(AUTH_SCHEMA), required=True, description="Secrets are sealed, never returned."),
    Field("price_per_call_usd", Usd(allow_zero=True), default="0.001"),
    Field(
        "allowed_tools",
        Custom(
            {
                "anyOf": [
                    {
                        "type": "array",
                        "maxItems": TOOLS_MAX,
                        "uniqueItems": True,
                        "items": {"type": "string", "maxLength": TOOL_NAME_MAX},
                    },
                    {"type": "null"},
                ]
            },
            _tools,
        ),
        description="null: every tool.",
    ),
    Field("is_active", Boolean(), default=True),
    read_only=_READ_ONLY,
)
APP_PATCH: Final = APP_BODY.updating()
