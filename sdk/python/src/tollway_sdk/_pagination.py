"""Pages of the management lists (SPEC §1.2: ``{"data": [...], "total": N, "page": P, "limit": L}``) and iterators
over every item of every page.

``client.platform.end_users.list()`` returns the first ``SyncPage``; iterating over it walks all the pages::

    for end_user in client.platform.end_users.list(limit=100):
        ...

The async client's ``list()`` returns an ``AsyncPaginator``: ``await`` it for the first page, or ``async for`` over it
for every item. Lists are newest first, so items created while iterating may shift a page and appear twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tollway_sdk._async.api_client import AsyncAPIClient
from tollway_sdk._base_client import Call
from tollway_sdk._errors import TollwayError
from tollway_sdk._sync.api_client import SyncAPIClient

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ListCall(Generic[T]):
    """A paginated list: its path, its filters, and how to read one item."""

    path: str
    parse_item: Callable[[Any], T]
    query: Mapping[str, str] = field(default_factory=dict)

    def page_call(self, page: int, limit: int | None) -> Call[tuple[list[T], int, int, int]]:
        params = {**self.query, "page": str(page)}
        if limit is not None:
            params["limit"] = str(limit)
        return Call("GET", self.path, self._parse_page, query=params)

    def _parse_page(self, raw: Any) -> tuple[list[T], int, int, int]:
        if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
            raise TollwayError(f"Expected a list page from {self.path}, got {type(raw).__name__}.")
        items = [self.parse_item(item) for item in raw["data"]]
        return items, int(raw["total"]), int(raw["page"]), int(raw["limit"])


class _PageBase(Generic[T]):
    def __init__(self, data: list[T], total: int, page: int, limit: int) -> None:
        self.data = data
        self.total = total
        self.page = page
        self.limit = limit

    def has_next_page(self) -> bool:
        return bool(self.data) and self.page * self.limit < self.total

    def __repr__(self) -> str:
        return f"{type(self).__name__}(page={self.page}, limit={self.limit}, total={self.total}, data={self.data!r})"


class SyncPage(_PageBase[T]):
    """One page of a list; iterating over it yields the items of this page and of every later one."""

    def __init__(self, client: SyncAPIClient, call: ListCall[T], data: tuple[list[T], int, int, int]) -> None:
        super().__init__(*data)
        self._client, self._call = client, call

    @classmethod
    def fetch(cls, client: SyncAPIClient, call: ListCall[T], limit: int | None, page: int) -> SyncPage[T]:
        return cls(client, call, client.request(call.page_call(page, limit)))

    def next_page(self) -> SyncPage[T]:
        if not self.has_next_page():
            raise RuntimeError("this is the last page: check has_next_page() first")
        return SyncPage.fetch(self._client, self._call, self.limit, self.page + 1)

    def iter_pages(self) -> Iterator[SyncPage[T]]:
        page = self
        yield page
        while page.has_next_page():
            page = page.next_page()
            yield page

    def __iter__(self) -> Iterator[T]:
        for page in self.iter_pages():
            yield from page.data


class AsyncPage(_PageBase[T]):
    """One page of a list of the async client; ``async for`` over it yields every item from this page on."""

    def __init__(self, client: AsyncAPIClient, call: ListCall[T], data: tuple[list[T], int, int, int]) -> None:
        super().__init__(*data)
        self._client, self._call = client, call

    @classmethod
    async def fetch(cls, client: AsyncAPIClient, call: ListCall[T], limit: int | None, page: int) -> AsyncPage[T]:
        return cls(client, call, await client.request(call.page_call(page, limit)))

    async def next_page(self) -> AsyncPage[T]:
        if not self.has_next_page():
            raise RuntimeError("this is the last page: check has_next_page() first")
        return await AsyncPage.fetch(self._client, self._call, self.limit, self.page + 1)

    async def iter_pages(self) -> AsyncIterator[AsyncPage[T]]:
        page = self
        yield page
        while page.has_next_page():
            page = await page.next_page()
            yield page

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.iter_pages():
            for item in page.data:
                yield item


class AsyncPaginator(Generic[T]):
    """What the async ``list()`` methods return: awaitable (the first page) and async-iterable (every item)."""

    def __init__(self, client: AsyncAPIClient, call: ListCall[T], limit: int | None, page: int) -> None:
        self._client, self._call, self._limit, self._page = client, call, limit, page

    def _first(self) -> Awaitable[AsyncPage[T]]:
        return AsyncPage.fetch(self._client, self._call, self._limit, self._page)

    def __await__(self) -> Generator[Any, None, AsyncPage[T]]:
        return self._first().__await__()

    async def __aiter__(self) -> AsyncIterator[T]:
        page = await self._first()
        async for item in page:
            yield item
