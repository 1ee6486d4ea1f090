"""The URL rules of SPEC §11.5 for any URL a tenant names (webhook endpoints' rules, reused for MCP servers and
authorization servers, §16.1): ``https`` only, no credentials, every address the host resolves to public, unless
private URLs are allowed (development, tests). The connection itself re-checks the address it dials."""

from __future__ import annotations

from typing import Final

from tollway.domain.addresses import UnsafeUrl, check_url, is_public, parse_address
from tollway.domain.bodies import Text
from tollway.errors import InvalidRequest
from tollway.services.management.webhooks import Resolver

URL_MAX: Final = 2048
PUBLIC_URL: Final = Text(URL_MAX, format="uri")


async def public_url(value: object, param: str, *, allow_private: bool, resolve: Resolver) -> str:
    """The URL when §11.5 allows it; 400 ``invalid_request`` at ``param`` otherwise."""
    url = PUBLIC_URL.convert(value, param)
    try:
        host = check_url(url, allow_private=allow_private)
    except UnsafeUrl as exc:
        raise InvalidRequest(param + str(exc).removeprefix("url"), param) from None
    if allow_private or parse_address(host) is not None:
        return url
    try:
        addresses = await resolve(host)
    except OSError:
        raise InvalidRequest(f"{param} host could not be resolved.", param) from None
    if not addresses:
        raise InvalidRequest(f"{param} host could not be resolved.", param)
    for text in addresses:
        address = parse_address(text)
        if address is None or not is_public(address):
            raise InvalidRequest(
                f"{param} must point to a public address; its host resolves to a private, loopback or link-local one.",
                param,
            )
    return url
