"""``/v1/admin/providers`` (SPEC §4.1): the upstream APIs the operator registers."""

from __future__ import annotations

from typing import Literal, TypeAlias

from tollway_sdk._base_client import Call
from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, no_content, parser, seg
from tollway_sdk._types import NOT_GIVEN, NotGiven, body, query
from tollway_sdk.types.admin import Provider

ProviderKind: TypeAlias = Literal["openai", "openai_compatible", "anthropic", "gemini", "asi1"]

_PATH = "/v1/admin/providers"
_parse = parser(Provider)


def _create(slug: str, name: str, kind: str, base_url: str | NotGiven, is_active: bool | NotGiven) -> Call[Provider]:
    fields = body(slug=slug, name=name, kind=kind, base_url=base_url, is_active=is_active)
    return Call("POST", _PATH, _parse, body=fields)


def _list(kind: str | NotGiven) -> ListCall[Provider]:
    return ListCall(_PATH, _parse, query(kind=kind))


def _update(
    provider_id: str, name: str | NotGiven, base_url: str | NotGiven, is_active: bool | NotGiven
) -> Call[Provider]:
    fields = body(name=name, base_url=base_url, is_active=is_active)
    return Call("PATCH", f"{_PATH}/{seg(provider_id)}", _parse, body=fields)


class AsyncProviders(AsyncAPIResource):
    async def create(
        self,
        *,
        slug: str,
        name: str,
        kind: ProviderKind,
        base_url: str | NotGiven = NOT_GIVEN,
        is_active: bool | NotGiven = NOT_GIVEN,
    ) -> Provider:
        """Register a provider; ``base_url`` is required for ``openai_compatible``, else it has a default."""
        return await self._request(_create(slug, name, kind, base_url, is_active))

    def list(
        self, *, kind: ProviderKind | NotGiven = NOT_GIVEN, limit: int | NotGiven = NOT_GIVEN, page: int = 1
    ) -> AsyncPaginator[Provider]:
        return self._list(_list(kind), limit, page)

    async def retrieve(self, provider_id: str) -> Provider:
        return await self._request(Call("GET", f"{_PATH}/{seg(provider_id)}", _parse))

    async def update(
        self,
        provider_id: str,
        *,
        name: str | NotGiven = NOT_GIVEN,
        base_url: str | NotGiven = NOT_GIVEN,
        is_active: bool | NotGiven = NOT_GIVEN,
    ) -> Provider:
        return await self._request(_update(provider_id, name, base_url, is_active))

    async def delete(self, provider_id: str) -> None:
        """Refused (400) while model rows use the provider; removes the platforms' LLM configs for it."""
        await self._request(Call("DELETE", f"{_PATH}/{seg(provider_id)}", no_content))
