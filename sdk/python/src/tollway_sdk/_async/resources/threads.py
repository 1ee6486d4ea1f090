"""``/v1/threads`` (SPEC §16.4): the caller's own agent threads (any inference key: platform or end user)."""

from __future__ import annotations

from tollway_sdk._base_client import Call
from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, no_content, parser, raw, seg
from tollway_sdk._types import NOT_GIVEN, NotGiven
from tollway_sdk.types.threads import Thread, ThreadItem

_PATH = "/v1/threads"
_LIST = ListCall(_PATH, parser(Thread))


def _items(thread_id: str) -> ListCall[ThreadItem]:
    return ListCall(f"{_PATH}/{seg(thread_id)}/items", raw)


class AsyncThreads(AsyncAPIResource):
    def list(self, *, limit: int | NotGiven = NOT_GIVEN, page: int = 1) -> AsyncPaginator[Thread]:
        return self._list(_LIST, limit, page)

    async def retrieve(self, thread_id: str) -> Thread:
        return await self._request(Call("GET", f"{_PATH}/{seg(thread_id)}", parser(Thread)))

    def list_items(
        self, thread_id: str, *, limit: int | NotGiven = NOT_GIVEN, page: int = 1
    ) -> AsyncPaginator[ThreadItem]:
        """The thread's input and output items in order (oldest first)."""
        return self._list(_items(thread_id), limit, page)

    async def delete(self, thread_id: str) -> None:
        """Delete the thread and its stored responses."""
        await self._request(Call("DELETE", f"{_PATH}/{seg(thread_id)}", no_content))
