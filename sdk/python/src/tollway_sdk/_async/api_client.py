"""Sending one ``Call`` with retries (``_retries.py``): the request loop under ``AsyncTollway``. Building the request
and reading the answer are shared with the other client in ``tollway_sdk._base_client``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TypeVar

import httpx

from tollway_sdk._base_client import BaseClient, Call, connection_error

T = TypeVar("T")


class AsyncAPIClient(BaseClient):
    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | httpx.URL | None,
        timeout: float | httpx.Timeout,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
        http_client: httpx.AsyncClient | None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def request(self, call: Call[T]) -> T:
        request = self._build_request(self._http, call)
        retryable = self._retries.may_retry(request)
        retries_done = 0
        while True:
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                if retryable and retries_done < self.max_retries:
                    await asyncio.sleep(self._retries.backoff(retries_done))
                    retries_done += 1
                    continue
                raise connection_error(exc, request) from exc
            asked = self._retries.retry_after(response) if retryable else None
            if asked is not None and retries_done < self.max_retries:
                await response.aclose()
                await asyncio.sleep(self._retries.delay(retries_done, asked))
                retries_done += 1
                continue
            return self._answer(call, response)

    async def close(self) -> None:
        """Close the connection pool (only when the client created it)."""
        if self._owns_http:
            await self._http.aclose()
