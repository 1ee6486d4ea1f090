"""Dialling only public addresses (SPEC §11.5) for URLs that tenants or operators name: every address a connection
would dial is checked, names and literals alike, so a name that resolves to a private address is refused at connect
time too (DNS rebinding included). Two clients, one rule: ``PublicOnlyConnector`` for aiohttp (webhook endpoints,
OAuth, price catalogues, the MCP proxy's direct calls to apps) and ``PublicOnlyBackend`` for the ``httpx2`` client
under the ``mcp`` SDK (``public_only_transport``)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import aiohttp
import httpcore2
import httpx2
from httpcore2._backends.auto import AutoBackend

from tollway.domain.addresses import is_public, parse_address


class NonPublicAddress(OSError):
    """A connection would dial an address §11.5 refuses."""


class NonPublicConnect(httpcore2.ConnectError):
    """The same refusal in httpcore's terms (httpx reports it as a ``ConnectError`` caused by this one)."""


def _refuse(host: str) -> NonPublicAddress:
    return NonPublicAddress(f"refusing to connect to a non-public address for {host}")


class PublicOnlyConnector(aiohttp.TCPConnector):
    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[Any]:
        results = await super()._resolve_host(host, port, traces=traces)
        for result in results:
            address = parse_address(str(result["host"]))
            if address is None or not is_public(address):
                raise _refuse(host)
        return list(results)


class PublicOnlyBackend(AutoBackend):
    """httpcore's network backend that resolves the host itself, refuses it unless every address is public, and
    dials the checked address (TLS still verifies and sends the host name: httpcore takes both from the URL)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        if parse_address(host) is not None:
            addresses = [host]
        else:
            try:
                async with asyncio.timeout(timeout):
                    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except TimeoutError:
                raise httpcore2.ConnectTimeout(f"resolving {host} timed out") from None
            except OSError as exc:
                raise httpcore2.ConnectError(str(exc)) from exc
            addresses = [str(info[4][0]) for info in infos]
        checked = [parse_address(a) for a in addresses]
        if not addresses or not all(a is not None and is_public(a) for a in checked):
            raise NonPublicConnect(str(_refuse(host)))
        return await super().connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )


def public_only_transport(context: ssl.SSLContext, limits: httpx2.Limits) -> httpx2.AsyncHTTPTransport:
    """An ``httpx2`` transport (one connection pool) whose every connection dials a checked public address."""
    transport = httpx2.AsyncHTTPTransport(verify=context, limits=limits, trust_env=False)
    # httpx exposes no backend option; its pool takes one, and every connection it opens reads it from the pool.
    pool: httpcore2.AsyncConnectionPool = transport._pool
    pool._network_backend = PublicOnlyBackend()
    return transport
