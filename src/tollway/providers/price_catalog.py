"""Fetching a price catalogue over http(s) for ``tollway prices import URL`` and ``POST /v1/admin/models/import``
(SPEC §19): §11.5's URL rules (https, no credentials, every dialled address public; ``TOLLWAY_ALLOW_PRIVATE_URLS``
lifts the address rule and allows http), no redirects, a size cap and a total timeout."""

from __future__ import annotations

from typing import Final

import aiohttp

from tollway.domain.addresses import UnsafeUrl, check_url
from tollway.errors import InvalidRequest
from tollway.providers.public_http import PublicOnlyConnector

MAX_CATALOG_BYTES: Final = 32 * 1024 * 1024  # the published catalogue is a few MB
TIMEOUT_S: Final = 30.0


class HttpCatalogSource:
    def __init__(self, allow_private: bool, max_bytes: int = MAX_CATALOG_BYTES, timeout_s: float = TIMEOUT_S) -> None:
        self._allow_private = allow_private
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s

    async def fetch(self, url: str) -> bytes:
        """The body at ``url``; ``InvalidRequest`` at ``url`` for a refused URL, a failed fetch or an oversized body."""
        try:
            check_url(url, allow_private=self._allow_private)
        except UnsafeUrl as exc:
            raise InvalidRequest(str(exc), "url") from None
        connector = aiohttp.TCPConnector() if self._allow_private else PublicOnlyConnector(use_dns_cache=False)
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as s,
                s.get(url, allow_redirects=False) as response,
            ):
                if response.status != 200:
                    raise InvalidRequest(f"url: fetching the catalogue returned HTTP {response.status}.", "url")
                body = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise InvalidRequest(f"url: the catalogue is larger than {self._max_bytes} bytes.", "url")
                return bytes(body)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise InvalidRequest(f"url: the catalogue could not be fetched ({reason}).", "url") from None
