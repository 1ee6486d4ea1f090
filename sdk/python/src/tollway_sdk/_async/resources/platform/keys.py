"""``/v1/platforms/{pid}/api-keys`` (SPEC §5.2): the platform's keys, and revocation of any key of the platform."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from tollway_sdk._base_client import Call
from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, Scoped, no_content, parser, seg
from tollway_sdk._types import NOT_GIVEN, NotGiven, body, query
from tollway_sdk.types.keys import APIKey, CreatedAPIKey
from tollway_sdk.types.params import KeyScope


class _Calls(Scoped):
    def _list_call(self, type: str | NotGiven, end_user_id: str | NotGiven) -> ListCall[APIKey]:
        return ListCall(self._platform("api-keys"), parser(APIKey), query(type=type, end_user_id=end_user_id))

    def _create(
        self, name: str | NotGiven | None, scopes: Sequence[str] | NotGiven, expires_at: datetime | NotGiven | None
    ) -> Call[CreatedAPIKey]:
        fields = body(name=name, scopes=scopes, expires_at=expires_at)
        return Call("POST", self._platform("api-keys"), parser(CreatedAPIKey), body=fields)

    def _revoke(self, key_id: str) -> Call[None]:
        return Call("DELETE", self._platform("api-keys", seg(key_id)), no_content)


class AsyncKeys(_Calls, AsyncAPIResource):
    def list(
        self,
        *,
        type: Literal["platform", "end_user"] | NotGiven = NOT_GIVEN,
        end_user_id: str | NotGiven = NOT_GIVEN,
        limit: int | NotGiven = NOT_GIVEN,
        page: int = 1,
    ) -> AsyncPaginator[APIKey]:
        """Platform keys by default; ``type="end_user"`` (optionally with ``end_user_id``) lists end users' keys."""
        return self._list(self._list_call(type, end_user_id), limit, page)

    async def create(
        self,
        *,
        name: str | NotGiven | None = NOT_GIVEN,
        scopes: Sequence[KeyScope] | NotGiven = NOT_GIVEN,
        expires_at: datetime | NotGiven | None = NOT_GIVEN,
    ) -> CreatedAPIKey:
        """A new platform key; its ``raw_key`` is in this answer only."""
        return await self._request(self._create(name, scopes, expires_at))

    async def revoke(self, key_id: str) -> None:
        """Permanently revoke a platform or end-user key of this platform (effective everywhere within 1 s)."""
        await self._request(self._revoke(key_id))
