"""``AsyncTollway``: one client per deployment and key.

    client = AsyncTollway(base_url="https://tollway.example.com", api_key="sk-plat_...", platform_id="3f1e...")

Arguments not given come from ``TOLLWAY_BASE_URL``, ``TOLLWAY_API_KEY`` and ``TOLLWAY_PLATFORM_ID``. The key's kind
decides what the deployment lets it do: ``client.admin`` needs an operator key (``sk-admin_``), ``client.platform``
a platform key with scope ``manage`` (and ``platform_id``), ``client.me`` an end-user key (``sk-eu_``). ``.openai()``
returns the official OpenAI client for inference on the same deployment with the same key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from tollway_sdk._async.api_client import AsyncAPIClient
from tollway_sdk._async.resources.admin import AsyncAdmin
from tollway_sdk._async.resources.me import AsyncMe
from tollway_sdk._async.resources.platform import AsyncPlatformResource
from tollway_sdk._async.resources.threads import AsyncThreads
from tollway_sdk._base_client import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S
from tollway_sdk._types import NOT_GIVEN, NotGiven

if TYPE_CHECKING:
    import openai

__all__ = ["AsyncTollway"]


def _platform_id(value: str | None) -> str | None:
    return value if value is not None else os.environ.get("TOLLWAY_PLATFORM_ID") or None


def _openai_module() -> Any:
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("Tollway.openai() needs the openai package: pip install 'tollway-sdk[openai]'") from exc
    return openai


class AsyncTollway(AsyncAPIClient):
    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | httpx.URL | None = None,
        platform_id: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            http_client=http_client,
        )
        self.platform_id = _platform_id(platform_id)

    @cached_property
    def admin(self) -> AsyncAdmin:
        """The operator API (``sk-admin_``)."""
        return AsyncAdmin(self)

    @cached_property
    def platform(self) -> AsyncPlatformResource:
        """The platform API for ``platform_id`` (``sk-plat_`` with scope ``manage``)."""
        return AsyncPlatformResource(self, self.platform_id)

    @cached_property
    def me(self) -> AsyncMe:
        """End-user self-service (``sk-eu_``)."""
        return AsyncMe(self)

    @cached_property
    def threads(self) -> AsyncThreads:
        """The caller's agent threads (any inference key)."""
        return AsyncThreads(self)

    def with_options(
        self,
        *,
        api_key: str | NotGiven = NOT_GIVEN,
        platform_id: str | NotGiven = NOT_GIVEN,
        timeout: float | httpx.Timeout | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
    ) -> AsyncTollway:
        """A client for the same deployment with some options changed (e.g. the key of a new platform or of an end
        user). It shares this client's connection pool: closing it leaves the pool open; closing this client closes
        the pool for both."""
        return AsyncTollway(
            api_key=self.api_key if isinstance(api_key, NotGiven) else api_key,
            base_url=self.base_url,
            platform_id=self.platform_id if isinstance(platform_id, NotGiven) else platform_id,
            timeout=self.timeout if isinstance(timeout, NotGiven) else timeout,
            max_retries=self.max_retries if isinstance(max_retries, NotGiven) else max_retries,
            default_headers=self._default_headers,
            http_client=self._http,
        )

    def openai(self, **options: Any) -> openai.AsyncOpenAI:
        """The official ``openai.AsyncOpenAI`` client for inference on this deployment (``<base_url>/v1``) with this
        client's key, timeout and retries; ``options`` are passed on (e.g. ``max_retries=0``)."""
        settings: dict[str, Any] = {"timeout": self.timeout, "max_retries": self.max_retries, **options}
        client: openai.AsyncOpenAI = _openai_module().AsyncOpenAI(
            base_url=str(self.base_url.join("v1")), api_key=self.api_key, **settings
        )
        return client

    async def __aenter__(self) -> AsyncTollway:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()
