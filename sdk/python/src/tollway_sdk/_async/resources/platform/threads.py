"""``/v1/platforms/{pid}/threads`` (SPEC §16.4): every agent thread of the platform, or one end user's."""

from __future__ import annotations

from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, Scoped, parser
from tollway_sdk._types import NOT_GIVEN, NotGiven, query
from tollway_sdk.types.threads import PlatformThread


class _Calls(Scoped):
    def _list_call(self, end_user_id: str | NotGiven) -> ListCall[PlatformThread]:
        return ListCall(self._platform("threads"), parser(PlatformThread), query(end_user_id=end_user_id))


class AsyncPlatformThreads(_Calls, AsyncAPIResource):
    def list(
        self, *, end_user_id: str | NotGiven = NOT_GIVEN, limit: int | NotGiven = NOT_GIVEN, page: int = 1
    ) -> AsyncPaginator[PlatformThread]:
        return self._list(self._list_call(end_user_id), limit, page)
