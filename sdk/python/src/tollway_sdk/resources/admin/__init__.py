"""The operator API (``sk-admin_`` keys, SPEC §4): ``client.admin.providers``, ``.models``, ``.platforms`` and
``.reconcile()``."""

from __future__ import annotations

from functools import cached_property

from tollway_sdk._base_client import Call
from tollway_sdk._resource import AsyncAPIResource, SyncAPIResource, parser
from tollway_sdk.resources.admin.models import AsyncModels, Models
from tollway_sdk.resources.admin.platforms import AsyncPlatforms, Platforms
from tollway_sdk.resources.admin.providers import AsyncProviders, Providers
from tollway_sdk.types.admin import Reconciliation

__all__ = ["Admin", "AsyncAdmin"]

_RECONCILE = Call("GET", "/v1/admin/reconcile", parser(Reconciliation))


class Admin(SyncAPIResource):
    @cached_property
    def providers(self) -> Providers:
        return Providers(self._client)

    @cached_property
    def models(self) -> Models:
        return Models(self._client)

    @cached_property
    def platforms(self) -> Platforms:
        return Platforms(self._client)

    def reconcile(self) -> Reconciliation:
        """Recompute the money invariants (SPEC §9.6): ``ok`` is false when any ``differences`` exist."""
        return self._request(_RECONCILE)


class AsyncAdmin(AsyncAPIResource):
    @cached_property
    def providers(self) -> AsyncProviders:
        return AsyncProviders(self._client)

    @cached_property
    def models(self) -> AsyncModels:
        return AsyncModels(self._client)

    @cached_property
    def platforms(self) -> AsyncPlatforms:
        return AsyncPlatforms(self._client)

    async def reconcile(self) -> Reconciliation:
        return await self._request(_RECONCILE)
