"""Webhook endpoints use cases (SPEC §5.8, §11.5): strict bodies, the URL rules (checked against every address the
host resolves to), secrets created, sealed and shown once, rotation with a 24 h grace period, replay."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Final

from tollway.domain.addresses import UnsafeUrl, check_url, is_public, parse_address
from tollway.domain.bodies import Body, Boolean, Custom, Field, Text
from tollway.domain.clock import utcnow
from tollway.domain.conflicts import EndpointInactive
from tollway.domain.ids import new_id
from tollway.domain.ports.management import WebhookEndpointRepository
from tollway.domain.records import Record
from tollway.domain.sealing import Sealer
from tollway.domain.webhooks import ALL_EVENTS, DEFAULT_EVENTS, ROTATION_GRACE, DeliveryStatus, new_secret
from tollway.errors import InvalidRequest, NotFound

_READ_ONLY: Final = ("id", "platform_id", "disabled_reason", "created_at", "updated_at", "secret")
_URL_MAX: Final = 2048
_URL: Final = Text(_URL_MAX, format="uri")

Resolver = Callable[[str], Awaitable[list[str]]]


def secret_context(platform_id: str, endpoint_id: str) -> str:
    """What a sealed webhook secret is bound to: moved to another endpoint or platform, it does not open."""
    return f"{platform_id}/webhook/{endpoint_id}"


async def resolve_host(host: str) -> list[str]:
    """Every address the host name resolves to (A and AAAA)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class Webhooks:
    def __init__(
        self,
        store: WebhookEndpointRepository,
        sealer: Sealer,
        *,
        allow_private: bool,
        resolver: Resolver = resolve_host,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._allow_private = allow_private
        self._resolve = resolver

    async def _url(self, value: object) -> str:
        url = _URL.convert(value, "url")
        try:
            host = check_url(url, allow_private=self._allow_private)
        except UnsafeUrl as exc:
            raise InvalidRequest(str(exc), "url") from None
        if self._allow_private or parse_address(host) is not None:
            return url
        try:
            addresses = await self._resolve(host)
        except OSError:
            raise InvalidRequest("url host could not be resolved.", "url") from None
        for text in addresses:
            address = parse_address(text)
            if address is None or not is_public(address):
                raise InvalidRequest(
                    "url must point to a public address; its host resolves to a private, loopback or link-local one.",
                    "url",
                )
        if not addresses:
            raise InvalidRequest("url host could not be resolved.", "url")
        return url

    @staticmethod
    def _events(value: object, param: str = "events") -> list[str]:
        if not isinstance(value, list) or not value:
            raise InvalidRequest("events must be a non-empty list of event types.", "events")
        chosen: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or item not in ALL_EVENTS:
                param = f"events[{i}]"
                raise InvalidRequest(f"{param} must be one of: {', '.join(ALL_EVENTS)}.", param)
            if item not in chosen:
                chosen.append(item)
        return chosen

    async def create(self, platform_id: str, body: Mapping[str, Any]) -> tuple[Record, str]:
        spec = ENDPOINT_BODY
        spec.check(body)
        url = await self._url(spec.read(body, "url"))
        events = spec.read(body, "events")
        description = spec.read(body, "description")
        is_active = spec.read(body, "is_active")
        now, endpoint_id, secret = utcnow(), new_id(), new_secret()
        values = {
            "id": endpoint_id,
            "platform_id": platform_id,
            "url": url,
            "events": events,
            "description": description,
            "is_active": is_active,
            "disabled_reason": None if is_active else "manual",
            "secret_sealed": self._sealer.seal(secret, secret_context(platform_id, endpoint_id)),
            "previous_secret_sealed": None,
            "previous_secret_expires_at": None,
            "created_at": now,
            "updated_at": now,
            "deleted_at": None,
        }
        return await self._store.create(values), secret

    async def list_endpoints(self, platform_id: str, offset: int, limit: int) -> tuple[list[Record], int]:
        return await self._store.list_endpoints(platform_id, offset, limit)

    async def get(self, platform_id: str, endpoint_id: str) -> Record:
        row = await self._store.get(platform_id, endpoint_id)
        if row is None:
            raise NotFound("No webhook endpoint with this id.")
        return row

    async def update(self, platform_id: str, endpoint_id: str, body: Mapping[str, Any]) -> Record:
        await self.get(platform_id, endpoint_id)
        spec = ENDPOINT_PATCH
        spec.check(body)
        values: dict[str, Any] = {}
        if "url" in body:
            values["url"] = await self._url(spec.read(body, "url"))
        if "events" in body:
            values["events"] = spec.read(body, "events")
        if "description" in body:
            values["description"] = spec.read(body, "description")
        if "is_active" in body:
            active = spec.read(body, "is_active")
            values["is_active"] = active
            values["disabled_reason"] = None if active else "manual"
        row = await self._store.update(platform_id, endpoint_id, values, utcnow())
        if row is None:
            raise NotFound("No webhook endpoint with this id.")
        return row

    async def delete(self, platform_id: str, endpoint_id: str) -> None:
        if not await self._store.delete(platform_id, endpoint_id, utcnow()):
            raise NotFound("No webhook endpoint with this id.")

    async def rotate(self, platform_id: str, endpoint_id: str) -> tuple[str, datetime]:
        """A new secret; the old one keeps signing (second signature) for 24 h."""
        now = utcnow()
        expires_at = now + ROTATION_GRACE
        secret = new_secret()
        sealed = self._sealer.seal(secret, secret_context(platform_id, endpoint_id))
        if not await self._store.rotate(platform_id, endpoint_id, sealed, expires_at, now):
            raise NotFound("No webhook endpoint with this id.")
        return secret, expires_at

    async def deliveries(
        self, platform_id: str, endpoint_id: str, status: str | None, offset: int, limit: int
    ) -> tuple[list[Record], int]:
        await self.get(platform_id, endpoint_id)
        if status is not None and status not in {s.value for s in DeliveryStatus}:
            raise InvalidRequest("status must be one of: pending, succeeded, failed.", "status")
        return await self._store.deliveries(platform_id, endpoint_id, status, offset, limit)

    async def replay(self, platform_id: str, endpoint_id: str, delivery_id: str) -> Record:
        try:
            row = await self._store.replay(platform_id, endpoint_id, delivery_id, utcnow())
        except EndpointInactive:
            raise InvalidRequest("The endpoint is disabled; activate it before replaying deliveries.", None) from None
        if row is None:
            raise NotFound("No delivery with this id on this endpoint.")
        return row


_events = Webhooks._events
ENDPOINT_BODY: Final = Body(
    Field(
        "url",
        _URL,
        required=True,
        description="https (http only where private addresses are allowed); a public host (SPEC §11.5).",
    ),
    Field(
        "events",
        Custom(
            {"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(ALL_EVENTS)}}, Webhooks._events
        ),
        default=list(DEFAULT_EVENTS),
    ),
    Field("description", Text(500, min_len=0, single_line=False), nullable=True),
    Field("is_active", Boolean(), default=True),
    read_only=_READ_ONLY,
)
ENDPOINT_PATCH: Final = ENDPOINT_BODY.updating()
