"""Settings: the only place that reads the environment (SPEC §13.1).

Environment (``TOLLWAY_*``) beats the TOML file named by ``TOLLWAY_CONFIG`` / ``--config`` beats the defaults.
Built once by the CLI and passed in; tests build ``Settings(...)`` directly.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import ssl
import tomllib
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from redis.connection import parse_url

_TLS_REQS: Final = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_URL_OPTIONS: Final = frozenset(
    {"host", "port", "path", "db", "username", "password", "connection_class", "ssl_cert_reqs", "ssl_ca_certs"}
)
ADMIN_KEY_PATTERN = re.compile(r"^sk-admin_[A-Za-z0-9_-]{32,}$")


class SettingsError(ValueError):
    """A setting is invalid; the message names the environment variable."""


def decode_secret_key(value: str) -> bytes:
    """32 bytes given as base64 (standard or url-safe, padding optional) or as 64 hex digits."""
    text = value.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    padded = text + "=" * (-len(text) % 4)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decoder(padded.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        if len(raw) == 32:
            return raw
    raise SettingsError("TOLLWAY_SECRET_KEY must be 32 bytes as base64 or 64 hex digits")


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by TOLLWAY_CONFIG (keys are the variable names lower-cased without TOLLWAY_)."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path:
            try:
                with Path(path).open("rb") as fh:
                    self._data = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise SettingsError(f"TOLLWAY_CONFIG: cannot read {path}: {exc}") from exc

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOLLWAY_", frozen=True, extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///./tollway.db"
    redis_url: str | None = None
    redis_busy_poll_us: int = Field(default=250, ge=0, le=5000)
    admin_key: str | None = None
    secret_key: str | None = None
    data_dir: Path = Path("./tollway-data")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=256)
    expected_instances: int = Field(default=1, ge=1, le=10_000)
    allow_private_urls: bool = False
    max_body_bytes: int = Field(default=10_485_760, ge=1024)
    upstream_max_body_bytes: int = Field(default=33_554_432, ge=1024)
    connect_timeout_s: float = Field(default=5, gt=0)
    first_byte_timeout_s: float = Field(default=60, gt=0)
    idle_timeout_s: float = Field(default=60, gt=0)
    total_timeout_s: float = Field(default=600, gt=0)
    image_token_allowance: int = Field(default=3000, ge=0)
    auth_failure_limit: int = Field(default=300, ge=0)
    response_retention_days: int = Field(default=30, ge=1)
    thread_lease_s: float = Field(default=60, gt=0)  # SPEC §16.4: a thread's claim, renewed while its request runs
    drain_s: float = Field(default=30, ge=0)
    webhook_retry_delays_s: str = "5,300,1800,7200,18000,36000,36000"
    cors_origins: str | None = None
    # SPEC §15: peers whose X-Forwarded-For / Forwarded headers are believed (addresses or CIDRs; default none).
    trusted_proxies: str | None = None
    public_url: str | None = None  # SPEC §16: the external base URL in every URL Tollway hands out
    mcp_call_timeout_s: float = Field(default=60, gt=0)  # one MCP tool call (SPEC §16.3)
    mcp_max_result_bytes: int = Field(default=1_048_576, ge=1024)  # one MCP tool result (SPEC §16.3)
    console: bool = True  # SPEC §17.1: TOLLWAY_CONSOLE=0 turns the browser console at /console off
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Card top-ups (SPEC §17.2): on when both secrets are set; the API base is for tests (a fake Stripe).
    stripe_secret_key: str | None = Field(default=None, repr=False)
    stripe_webhook_secret: str | None = Field(default=None, repr=False)
    stripe_api_base: str | None = None

    @field_validator("admin_key")
    @classmethod
    def _check_admin_key(cls, value: str | None) -> str | None:
        if value is not None and not ADMIN_KEY_PATTERN.match(value):
            raise ValueError("must match ^sk-admin_[A-Za-z0-9_-]{32,}$")
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                decode_secret_key(value)
            except SettingsError as exc:
                raise ValueError("must be 32 bytes as base64 or 64 hex digits") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not (value.startswith("sqlite:///") or value.startswith(("postgresql://", "postgresql+asyncpg://"))):
            raise ValueError("must be sqlite:///<path> or postgresql://...")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None:
            redis_endpoint(value)  # ValueError names what is wrong, never the password
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str | None) -> str | None:
        if value is not None:
            parse_networks(value)  # ValueError names the entry that is not an address or CIDR
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/?#@\s]+(/[^?#\s]*)?", value):
            raise ValueError("must be an http(s) URL without query, fragment or credentials")
        return value

    @field_validator("stripe_secret_key", "stripe_webhook_secret")
    @classmethod
    def _check_stripe_secret(cls, value: str | None) -> str | None:
        # An empty value means "off", the way an unset variable does; the message never echoes the value.
        if value is not None and not value.strip():
            return None
        if value is not None and any(c.isspace() for c in value):
            raise ValueError("must not contain whitespace")
        return value

    @field_validator("stripe_api_base")
    @classmethod
    def _check_stripe_api_base(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/?#@]+(/[^\s?#]*)?", value):
            raise ValueError("must be an http(s) URL such as https://api.stripe.com")
        return None if value is None else value.rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_delays(self) -> Settings:
        _ = self.webhook_retry_delays
        return self

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        try:
            delays = tuple(float(part) for part in self.webhook_retry_delays_s.split(",") if part.strip())
        except ValueError as exc:
            raise ValueError("TOLLWAY_WEBHOOK_RETRY_DELAYS_S must be comma-separated seconds") from exc
        if not delays or any(d < 0 for d in delays):
            raise ValueError("TOLLWAY_WEBHOOK_RETRY_DELAYS_S must be comma-separated non-negative seconds")
        return delays

    @property
    def public_base_url(self) -> str:
        """``TOLLWAY_PUBLIC_URL`` without a trailing slash, by default ``http://127.0.0.1:<port>`` (SPEC §16)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://127.0.0.1:{self.port}"

    @property
    def stripe_enabled(self) -> bool:
        """Card top-ups are on when both Stripe secrets are set (SPEC §17.2)."""
        return bool(self.stripe_secret_key and self.stripe_webhook_secret)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlalchemy_url(self) -> str:
        """The async driver URL SQLAlchemy needs (aiosqlite or asyncpg)."""
        if self.is_sqlite:
            return "sqlite+aiosqlite:///" + self.database_url.removeprefix("sqlite:///")
        return "postgresql+asyncpg://" + self.database_url.split("://", 1)[1]

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        if not self.cors_origins:
            return ()
        return tuple(o.strip() for o in self.cors_origins.split(",") if o.strip())

    @property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.trusted_proxies or "")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _TomlSource(settings_cls, _CONFIG_PATH.get() or os.environ.get("TOLLWAY_CONFIG"))
        return (init_settings, env_settings, toml)


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """``10.0.0.1, 10.1.0.0/16, ::1`` -> networks (an address is a one-address network)."""
    networks: list[IPNetwork] = []
    for part in value.split(","):
        entry = part.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
    return tuple(networks)


_CONFIG_PATH: ContextVar[str | None] = ContextVar("tollway_config_path", default=None)


def load_settings(config_path: str | None = None, **overrides: Any) -> Settings:
    """Build the one Settings object; errors name the environment variable that is wrong."""
    from pydantic import ValidationError

    token = _CONFIG_PATH.set(config_path)  # this call only: the process environment is left as it was
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "TOLLWAY_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise SettingsError(f"{name}: {first['msg']}") from exc
    finally:
        _CONFIG_PATH.reset(token)


@dataclass(frozen=True, slots=True)
class RedisEndpoint:
    """Where Redis listens and how to log in; nothing is opened until the first command."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a Unix socket (unix://…) instead of host and port
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    connect_timeout_s: float = 0.25


def redis_endpoint(url: str, *, connect_timeout_s: float = 0.25) -> RedisEndpoint:
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS; ``?ssl_cert_reqs=none`` skips
    verification, ``?ssl_ca_certs=<file>`` names the CA) or ``unix:///path/redis.sock[?db=N]``. Raises
    ``ValueError`` naming what is wrong; never echoes the password."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must be redis://…, rediss://… or unix://…")
    try:
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError) as exc:  # a bad port or db number; the message never holds the password
        raise ValueError(f"is not a valid Redis URL ({exc})") from None
    unknown = sorted(set(options) - _URL_OPTIONS)
    if unknown:
        raise ValueError(f"option {unknown[0]!r} is not supported; the URL takes db, ssl_cert_reqs and ssl_ca_certs")
    tls: ssl.SSLContext | None = None
    if getattr(options.get("connection_class"), "__name__", "") == "SSLConnection":
        tls = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
        reqs = _TLS_REQS.get(str(options.get("ssl_cert_reqs", "required")).lower())
        if reqs is None:
            raise ValueError("ssl_cert_reqs must be none, optional or required")
        if reqs != ssl.CERT_REQUIRED:
            tls.check_hostname = False
        tls.verify_mode = reqs
    elif "ssl_cert_reqs" in options or "ssl_ca_certs" in options:
        raise ValueError("ssl_cert_reqs and ssl_ca_certs need a rediss:// URL")
    return RedisEndpoint(
        host=options.get("host") or "127.0.0.1",
        port=int(options.get("port") or 6379),
        path=options.get("path"),
        db=int(options.get("db") or 0),
        username=options.get("username"),
        password=options.get("password"),
        tls=tls,
        connect_timeout_s=connect_timeout_s,
    )
