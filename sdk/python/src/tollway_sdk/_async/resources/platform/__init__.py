"""The platform API (``sk-plat_`` keys with scope ``manage``, SPEC §5, §16): ``client.platform`` is the client's
platform (``platform_id``), with its end users, budgets, keys, LLM configs, rate limits, wallet, usage logs,
webhooks, MCP apps and threads."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from tollway_sdk._async.resources.platform.budgets import AsyncBudgets
from tollway_sdk._async.resources.platform.end_users import AsyncEndUsers
from tollway_sdk._async.resources.platform.keys import AsyncKeys
from tollway_sdk._async.resources.platform.llm_configs import AsyncLLMConfigs
from tollway_sdk._async.resources.platform.logs import AsyncLogs
from tollway_sdk._async.resources.platform.mcp_apps import AsyncMCPApps
from tollway_sdk._async.resources.platform.rate_limits import AsyncRateLimits
from tollway_sdk._async.resources.platform.threads import AsyncPlatformThreads
from tollway_sdk._async.resources.platform.wallet import AsyncWalletResource
from tollway_sdk._async.resources.platform.webhooks import AsyncWebhooks
from tollway_sdk._base_client import Call
from tollway_sdk._resource import AsyncAPIResource, Scoped, no_content, parser
from tollway_sdk._types import NOT_GIVEN, NotGiven, given
from tollway_sdk.types.admin import Platform
from tollway_sdk.types.params import PlatformSettingsParam

__all__ = ["AsyncPlatformResource"]


class _Calls(Scoped):
    def _call(self, method: str, fields: dict[str, Any] | None = None) -> Call[Platform]:
        return Call(method, self._platform(), parser(Platform), body=fields)

    def _delete(self) -> Call[None]:
        return Call("DELETE", self._platform(), no_content)


class AsyncPlatformResource(_Calls, AsyncAPIResource):
    async def retrieve(self) -> Platform:
        return await self._request(self._call("GET"))

    async def update(
        self, *, name: str | NotGiven = NOT_GIVEN, settings: PlatformSettingsParam | NotGiven = NOT_GIVEN
    ) -> Platform:
        """Rename the platform or change settings; each settings key given replaces its stored value whole."""
        return await self._request(self._call("PATCH", given(locals())))

    async def delete(self) -> None:
        """Delete the platform: its keys stop working at once; its ledgers and logs are kept but unreachable."""
        await self._request(self._delete())

    @cached_property
    def end_users(self) -> AsyncEndUsers:
        return AsyncEndUsers(self._client, self._platform_id)

    @cached_property
    def budgets(self) -> AsyncBudgets:
        return AsyncBudgets(self._client, self._platform_id)

    @cached_property
    def keys(self) -> AsyncKeys:
        return AsyncKeys(self._client, self._platform_id)

    @cached_property
    def llm_configs(self) -> AsyncLLMConfigs:
        return AsyncLLMConfigs(self._client, self._platform_id)

    @cached_property
    def rate_limits(self) -> AsyncRateLimits:
        return AsyncRateLimits(self._client, self._platform_id)

    @cached_property
    def wallet(self) -> AsyncWalletResource:
        return AsyncWalletResource(self._client, self._platform_id)

    @cached_property
    def logs(self) -> AsyncLogs:
        return AsyncLogs(self._client, self._platform_id)

    @cached_property
    def webhooks(self) -> AsyncWebhooks:
        return AsyncWebhooks(self._client, self._platform_id)

    @cached_property
    def mcp_apps(self) -> AsyncMCPApps:
        return AsyncMCPApps(self._client, self._platform_id)

    @cached_property
    def threads(self) -> AsyncPlatformThreads:
        return AsyncPlatformThreads(self._client, self._platform_id)
