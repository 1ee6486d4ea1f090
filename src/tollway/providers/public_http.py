"""The aiohttp connector for URLs that tenants or operators name (webhook endpoints, price catalogues): it checks
every address a connection would dial, names and literals alike, so a name that resolves to a private address is
refused at connect time too (SPEC §11.5; DNS rebinding included)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tollway.domain.addresses import is_public, parse_address


class PublicOnlyConnector(aiohttp.TCPConnector):
    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[Any]:
        results = await super()._resolve_host(host, port, traces=traces)
        for result in results:
            address = parse_address(str(result["host"]))
            if address is None or not is_public(address):
                raise OSError(f"refusing to connect to a non-public address for {host}")
        return list(results)
