"""The platform API (``sk-plat_`` keys with scope ``manage``, SPEC §5, §16): ``client.platform`` is the client's
platform (``platform_id``), with its end users, budgets, keys, LLM configs, rate limits, wallet, usage logs,
webhooks, MCP apps and threads."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from tollway_sdk._base_client import Call
from tollway_sdk._resource import AsyncAPIResource, Scoped, SyncAPIResource, no_content, parser
from tollway_sdk._types import NOT_GIVEN, NotGiven, given
from tollway_sdk.resources.platform.budgets import AsyncBudgets, Budgets
from tollway_sdk.resources.platform.end_users import AsyncEndUsers, EndUsers
from tollway_sdk.resources.platform.keys import AsyncKeys, Keys
from tollway_sdk.resources.platform.llm_configs import AsyncLLMConfigs, LLMConfigs
from tollway_sdk.resources.platform.logs import AsyncLogs, Logs
from tollway_sdk.resources.platform.mcp_apps import AsyncMCPApps, MCPApps
from tollway_sdk.resources.platform.rate_limits import AsyncRateLimits, RateLimits
from tollway_sdk.resources.platform.threads import AsyncPlatformThreads, PlatformThreads
from tollway_sdk.resources.platform.wallet import AsyncWalletResource, WalletResource
from tollway_sdk.resources.platform.webhooks import AsyncWebhooks, Webhooks
from tollway_sdk.types.admin import Platform
from tollway_sdk.types.params import PlatformSettingsParam

__all__ = ["AsyncPlatformResource", "PlatformResource"]


class _Calls(Scoped):
    def _call(self, method: str, fields: dict[str, Any] | None = None) -> Call[Platform]:
        return Call(method, self._platform(), parser(Platform), body=fields)

    def _delete(self) -> Call[None]:
        return Call("DELETE", self._platform(), no_content)


class PlatformResource(_Calls, SyncAPIResource):
    def retrieve(self) -> Platform:
        return self._request(self._call("GET"))

    def update(
        self, *, name: str | NotGiven = NOT_GIVEN, settings: PlatformSettingsParam | NotGiven = NOT_GIVEN
    ) -> Platform:
        """Rename the platform or change settings; each settings key given replaces its stored value whole."""
        return self._request(self._call("PATCH", given(locals())))

    def delete(self) -> None:
        """Delete the platform: its keys stop working at once; its ledgers and logs are kept but unreachable."""
        self._request(self._delete())

    @cached_property
    def end_users(self) -> EndUsers:
        return EndUsers(self._client, self._platform_id)

    @cached_property
    def budgets(self) -> Budgets:
        return Budgets(self._client, self._platform_id)

    @cached_property
    def keys(self) -> Keys:
        return Keys(self._client, self._platform_id)

    @cached_property
    def llm_configs(self) -> LLMConfigs:
        return LLMConfigs(self._client, self._platform_id)

    @cached_property
    def rate_limits(self) -> RateLimits:
        return RateLimits(self._client, self._platform_id)

    @cached_property
    def wallet(self) -> WalletResource:
        return WalletResource(self._client, self._platform_id)

    @cached_property
    def logs(self) -> Logs:
        return Logs(self._client, self._platform_id)

    @cached_property
    def webhooks(self) -> Webhooks:
        return Webhooks(self._client, self._platform_id)

    @cached_property
    def mcp_apps(self) -> MCPApps:
        return MCPApps(self._client, self._platform_id)

    @cached_property
    def threads(self) -> PlatformThreads:
        return PlatformThreads(self._client, self._platform_id)


class AsyncPlatformResource(_Calls, AsyncAPIResource):
    async def retrieve(self) -> Platform:
        return await self._request(self._call("GET"))

    async def update(
        self, *, name: str | NotGiven = NOT_GIVEN, settings: PlatformSettingsParam | NotGiven = NOT_GIVEN
    ) -> Platform:
        return await self._request(self._call("PATCH", given(locals())))

    async def delete(self) -> None:
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
