"""The operator API (``sk-admin_`` keys, SPEC §4): ``client.admin.providers``, ``.models``, ``.platforms`` and
``.reconcile()``."""

from __future__ import annotations

from functools import cached_property

from tollway_sdk._async.resources.admin.models import AsyncModels
from tollway_sdk._async.resources.admin.platforms import AsyncPlatforms
from tollway_sdk._async.resources.admin.providers import AsyncProviders
from tollway_sdk._base_client import Call
from tollway_sdk._resource import AsyncAPIResource, parser
from tollway_sdk.types.admin import Reconciliation

__all__ = ["AsyncAdmin"]

_RECONCILE = Call("GET", "/v1/admin/reconcile", parser(Reconciliation))


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
        """Recompute the money invariants (SPEC §9.6): ``ok`` is false when any ``differences`` exist."""
        return await self._request(_RECONCILE)
