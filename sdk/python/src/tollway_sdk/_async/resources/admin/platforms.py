"""``/v1/admin/platforms`` (SPEC §4.3): creating tenants, recovery keys, and crediting their wallets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tollway_sdk._base_client import Call
from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, parser, seg
from tollway_sdk._types import NOT_GIVEN, USD, NotGiven, body, usd
from tollway_sdk.types.admin import CreatedPlatform, Platform, PlatformWithWallet
from tollway_sdk.types.keys import CreatedAPIKey
from tollway_sdk.types.params import KeyScope, PlatformSettingsParam
from tollway_sdk.types.wallet import WalletTopup

_PATH = "/v1/admin/platforms"


def _create(name: str, slug: str | NotGiven, settings: PlatformSettingsParam | NotGiven) -> Call[CreatedPlatform]:
    return Call("POST", _PATH, parser(CreatedPlatform), body=body(name=name, slug=slug, settings=settings))


def _key(
    platform_id: str,
    name: str | NotGiven | None,
    scopes: Sequence[KeyScope] | NotGiven,
    expires_at: datetime | NotGiven | None,
) -> Call[CreatedAPIKey]:
    fields = body(name=name, scopes=scopes, expires_at=expires_at)
    return Call("POST", f"{_PATH}/{seg(platform_id)}/api-keys", parser(CreatedAPIKey), body=fields)


def _topup(
    platform_id: str,
    amount_usd: USD,
    description: str | NotGiven,
    metadata: Mapping[str, Any] | NotGiven,
    idempotency_key: str | None,
) -> Call[WalletTopup]:
    fields = body(amount_usd=usd(amount_usd, "amount_usd"), description=description, metadata=metadata)
    path = f"{_PATH}/{seg(platform_id)}/wallet/topup"
    return Call("POST", path, parser(WalletTopup), body=fields, money=True, idempotency_key=idempotency_key)


class AsyncPlatforms(AsyncAPIResource):
    async def create(
        self, *, name: str, slug: str | NotGiven = NOT_GIVEN, settings: PlatformSettingsParam | NotGiven = NOT_GIVEN
    ) -> CreatedPlatform:
        """Create a platform with an empty wallet and its first platform key (``api_key.raw_key``, shown once)."""
        return await self._request(_create(name, slug, settings))

    def list(self, *, limit: int | NotGiven = NOT_GIVEN, page: int = 1) -> AsyncPaginator[Platform]:
        return self._list(ListCall(_PATH, parser(Platform)), limit, page)

    async def retrieve(self, platform_id: str) -> PlatformWithWallet:
        return await self._request(Call("GET", f"{_PATH}/{seg(platform_id)}", parser(PlatformWithWallet)))

    async def create_api_key(
        self,
        platform_id: str,
        *,
        name: str | NotGiven | None = NOT_GIVEN,
        scopes: Sequence[KeyScope] | NotGiven = NOT_GIVEN,
        expires_at: datetime | NotGiven | None = NOT_GIVEN,
    ) -> CreatedAPIKey:
        """A new platform key, e.g. to recover a platform that lost its keys."""
        return await self._request(_key(platform_id, name, scopes, expires_at))

    async def topup_wallet(
        self,
        platform_id: str,
        *,
        amount_usd: USD,
        description: str | NotGiven = NOT_GIVEN,
        metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        idempotency_key: str | None = None,
    ) -> WalletTopup:
        """Credit the platform's wallet. Sent with an ``Idempotency-Key`` (yours, or one generated for this call
        and reused by its retries), so the wallet is credited at most once."""
        return await self._request(_topup(platform_id, amount_usd, description, metadata, idempotency_key))
