"""End-user self-service (``sk-eu_`` keys, SPEC §6, §16.2): ``client.me.budget``, ``.rate_limits``, ``.usage`` and
``.mcp`` (connections to the platform's MCP apps)."""

from __future__ import annotations

from datetime import datetime
from functools import cached_property

from tollway_sdk._async.resources.me.mcp import AsyncMyMCP
from tollway_sdk._base_client import Call
from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, parser
from tollway_sdk._types import NOT_GIVEN, NotGiven, query
from tollway_sdk.types.end_users import Budget, EffectiveRateLimits
from tollway_sdk.types.usage import EndUserUsage

__all__ = ["AsyncMe"]

_BUDGET = Call("GET", "/v1/me/budget", parser(Budget))
_RATE_LIMITS = Call("GET", "/v1/me/rate-limits", parser(EffectiveRateLimits))


def _usage(
    model: str | NotGiven,
    status: str | NotGiven,
    request_type: str | NotGiven,
    since: datetime | NotGiven,
    until: datetime | NotGiven,
) -> ListCall[EndUserUsage]:
    filters = query(model=model, status=status, request_type=request_type, since=since, until=until)
    return ListCall("/v1/me/usage", parser(EndUserUsage), filters)


class AsyncMe(AsyncAPIResource):
    async def budget(self) -> Budget:
        """The caller's active budget (suspended or not); ``ObjectNotFoundError`` when none is active."""
        return await self._request(_BUDGET)

    async def rate_limits(self) -> EffectiveRateLimits:
        """The limits in force for the caller, and whether they come from an override or the platform default."""
        return await self._request(_RATE_LIMITS)

    def usage(
        self,
        *,
        model: str | NotGiven = NOT_GIVEN,
        status: str | NotGiven = NOT_GIVEN,
        request_type: str | NotGiven = NOT_GIVEN,
        since: datetime | NotGiven = NOT_GIVEN,
        until: datetime | NotGiven = NOT_GIVEN,
        limit: int | NotGiven = NOT_GIVEN,
        page: int = 1,
    ) -> AsyncPaginator[EndUserUsage]:
        """The caller's own usage rows with what each was charged."""
        return self._list(_usage(model, status, request_type, since, until), limit, page)

    @cached_property
    def mcp(self) -> AsyncMyMCP:
        return AsyncMyMCP(self._client)
