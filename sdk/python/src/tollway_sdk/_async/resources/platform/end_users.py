"""``/v1/platforms/{pid}/end-users`` (SPEC §5.4): the platform's users, each with its own ``sk-eu_`` keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from tollway_sdk._base_client import Call
from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, Scoped, no_content, parser, seg
from tollway_sdk._types import NOT_GIVEN, NotGiven, body, given, query
from tollway_sdk.types.end_users import CreatedEndUser, EndUser
from tollway_sdk.types.keys import CreatedAPIKey

_parse = parser(EndUser)


class _Calls(Scoped):
    def _create(self, fields: dict[str, Any]) -> Call[CreatedEndUser]:
        return Call("POST", self._platform("end-users"), parser(CreatedEndUser), body=fields, created_flag=True)

    def _list_call(self, external_id: str | NotGiven) -> ListCall[EndUser]:
        return ListCall(self._platform("end-users"), _parse, query(external_id=external_id))

    def _one(self, method: str, end_user_id: str, fields: dict[str, Any] | None = None) -> Call[EndUser]:
        return Call(method, self._platform("end-users", seg(end_user_id)), _parse, body=fields)

    def _delete(self, end_user_id: str) -> Call[None]:
        return Call("DELETE", self._platform("end-users", seg(end_user_id)), no_content)

    def _key(self, end_user_id: str, fields: dict[str, Any]) -> Call[CreatedAPIKey]:
        path = self._platform("end-users", seg(end_user_id), "api-keys")
        return Call("POST", path, parser(CreatedAPIKey), body=fields)


class AsyncEndUsers(_Calls, AsyncAPIResource):
    async def create(
        self,
        *,
        external_id: str,
        display_name: str | NotGiven | None = NOT_GIVEN,
        metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    ) -> CreatedEndUser:
        """Create an end user, idempotently by ``external_id``: repeating it returns the existing user
        (``created`` false) with a fresh key (``api_key.raw_key``) and its budget (the platform's default, if any)."""
        return await self._request(self._create(given(locals())))

    def list(
        self, *, external_id: str | NotGiven = NOT_GIVEN, limit: int | NotGiven = NOT_GIVEN, page: int = 1
    ) -> AsyncPaginator[EndUser]:
        return self._list(self._list_call(external_id), limit, page)

    async def retrieve(self, end_user_id: str) -> EndUser:
        return await self._request(self._one("GET", end_user_id))

    async def update(
        self,
        end_user_id: str,
        *,
        display_name: str | NotGiven | None = NOT_GIVEN,
        metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        is_active: bool | NotGiven = NOT_GIVEN,
    ) -> EndUser:
        """``is_active: False`` blocks the user's inference (403) and keeps everything else."""
        return await self._request(self._one("PATCH", end_user_id, given(locals(), "end_user_id")))

    async def delete(self, end_user_id: str) -> None:
        """Revoke its keys, deactivate its budget and free its ``external_id``; ledgers and logs are kept."""
        await self._request(self._delete(end_user_id))

    async def create_api_key(
        self,
        end_user_id: str,
        *,
        name: str | NotGiven | None = NOT_GIVEN,
        scopes: Sequence[Literal["inference"]] | NotGiven = NOT_GIVEN,
        expires_at: datetime | NotGiven | None = NOT_GIVEN,
    ) -> CreatedAPIKey:
        return await self._request(self._key(end_user_id, body(name=name, scopes=scopes, expires_at=expires_at)))
