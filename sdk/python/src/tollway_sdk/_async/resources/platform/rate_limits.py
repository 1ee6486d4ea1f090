"""``/v1/platforms/{pid}/end-users/{id}/rate-limits`` (SPEC §5.6): one end user's override of the platform's
default limits. A ``None`` limit inherits the platform default for that dimension."""

from __future__ import annotations

from tollway_sdk._base_client import Call
from tollway_sdk._resource import AsyncAPIResource, Scoped, no_content, parser, seg
from tollway_sdk.types.end_users import RateLimitOverride


class _Calls(Scoped):
    def _call(
        self, method: str, end_user_id: str, limits: dict[str, int | None] | None = None
    ) -> Call[RateLimitOverride]:
        return Call(method, self._path(end_user_id), parser(RateLimitOverride), body=limits)

    def _path(self, end_user_id: str) -> str:
        return self._platform("end-users", seg(end_user_id), "rate-limits")

    def _delete(self, end_user_id: str) -> Call[None]:
        return Call("DELETE", self._path(end_user_id), no_content)


class AsyncRateLimits(_Calls, AsyncAPIResource):
    async def retrieve(self, end_user_id: str) -> RateLimitOverride:
        """The override; ``ObjectNotFoundError`` when the end user has none."""
        return await self._request(self._call("GET", end_user_id))

    async def set(
        self,
        end_user_id: str,
        *,
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        rpd_limit: int | None = None,
    ) -> RateLimitOverride:
        """Replace the override whole (PUT): requests per minute, tokens per minute, requests per day."""
        limits = {"rpm_limit": rpm_limit, "tpm_limit": tpm_limit, "rpd_limit": rpd_limit}
        return await self._request(self._call("PUT", end_user_id, limits))

    async def delete(self, end_user_id: str) -> None:
        """Remove the override: the platform's defaults apply again."""
        await self._request(self._delete(end_user_id))
