"""The base of every resource class: a handle on the client, and how to run one call or open one list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from tollway_sdk._async.api_client import AsyncAPIClient
from tollway_sdk._base_client import Call
from tollway_sdk._errors import TollwayError
from tollway_sdk._pagination import AsyncPaginator, ListCall, SyncPage
from tollway_sdk._sync.api_client import SyncAPIClient
from tollway_sdk._types import NotGiven

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def parser(model: type[M]) -> Callable[[Any], M]:
    return model.model_validate


def no_content(_: Any) -> None:
    return None


def raw(value: Any) -> Any:
    return value


def seg(value: str) -> str:
    """One path segment from an id or slug, percent-encoded so it can never change the path."""
    if not value:
        raise ValueError("an id in a path must not be empty")
    return quote(value, safe="")


def page_limit(limit: int | NotGiven) -> int | None:
    return None if isinstance(limit, NotGiven) else limit


class Scoped:
    _platform_id: str | None

    def _platform(self, *parts: str) -> str:
        """``/v1/platforms/{platform_id}/...`` for the client's platform."""
        if not self._platform_id:
            raise TollwayError(
                "This call needs the platform id: pass platform_id= to the client or set TOLLWAY_PLATFORM_ID."
            )
        return "/".join(("/v1/platforms", seg(self._platform_id), *parts))


class SyncAPIResource(Scoped):
    def __init__(self, client: SyncAPIClient, platform_id: str | None = None) -> None:
        self._client = client
        self._platform_id = platform_id

    def _request(self, call: Call[T]) -> T:
        return self._client.request(call)

    def _list(self, call: ListCall[T], limit: int | NotGiven, page: int) -> SyncPage[T]:
        return SyncPage.fetch(self._client, call, page_limit(limit), page)


class AsyncAPIResource(Scoped):
    def __init__(self, client: AsyncAPIClient, platform_id: str | None = None) -> None:
        self._client = client
        self._platform_id = platform_id

    async def _request(self, call: Call[T]) -> T:
        return await self._client.request(call)

    def _list(self, call: ListCall[T], limit: int | NotGiven, page: int) -> AsyncPaginator[T]:
        return AsyncPaginator(self._client, call, page_limit(limit), page)
