"""``/v1/platforms/{pid}/llm-configs`` (SPEC §5.3): the platform's own provider keys, encrypted at rest and never
returned."""

from __future__ import annotations

from typing import Any

from tollway_sdk._base_client import Call
from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, Scoped, no_content, parser, seg
from tollway_sdk._types import NOT_GIVEN, NotGiven, given, query
from tollway_sdk.types.llm_configs import LLMConfig

_parse = parser(LLMConfig)


class _Calls(Scoped):
    def _call(self, method: str, config_id: str | None = None, fields: dict[str, Any] | None = None) -> Call[LLMConfig]:
        path = self._platform("llm-configs") if config_id is None else self._platform("llm-configs", seg(config_id))
        return Call(method, path, _parse, body=fields)

    def _list_call(self, provider_id: str | NotGiven) -> ListCall[LLMConfig]:
        return ListCall(self._platform("llm-configs"), _parse, query(provider_id=provider_id))

    def _delete(self, config_id: str) -> Call[None]:
        return Call("DELETE", self._platform("llm-configs", seg(config_id)), no_content)


class AsyncLLMConfigs(_Calls, AsyncAPIResource):
    async def create(
        self,
        *,
        provider_id: str,
        api_key: str,
        is_default: bool | NotGiven = NOT_GIVEN,
        is_active: bool | NotGiven = NOT_GIVEN,
    ) -> LLMConfig:
        """Connect the platform's own key for a provider; ``is_default`` makes it the one used for that provider."""
        return await self._request(self._call("POST", fields=given(locals())))

    def list(
        self, *, provider_id: str | NotGiven = NOT_GIVEN, limit: int | NotGiven = NOT_GIVEN, page: int = 1
    ) -> AsyncPaginator[LLMConfig]:
        return self._list(self._list_call(provider_id), limit, page)

    async def retrieve(self, config_id: str) -> LLMConfig:
        return await self._request(self._call("GET", config_id))

    async def update(
        self,
        config_id: str,
        *,
        provider_id: str | NotGiven = NOT_GIVEN,
        api_key: str | NotGiven = NOT_GIVEN,
        is_default: bool | NotGiven = NOT_GIVEN,
        is_active: bool | NotGiven = NOT_GIVEN,
    ) -> LLMConfig:
        """Rotate the key (``api_key``), make it the default, or deactivate it."""
        return await self._request(self._call("PATCH", config_id, given(locals(), "config_id")))

    async def delete(self, config_id: str) -> None:
        await self._request(self._delete(config_id))
