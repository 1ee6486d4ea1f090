"""The client address (SPEC §15): ``X-Forwarded-For`` / ``Forwarded`` are believed only from trusted proxies.

With ``TOLLWAY_TRUSTED_PROXIES`` unset the address is the direct peer, whatever the headers say. Otherwise, when the
peer is trusted, the chain the headers describe (``X-Forwarded-For`` when present, else the ``for=`` parameters of
``Forwarded``) is walked from the right past every trusted hop; the first address that is not trusted is the client
(the leftmost one when every hop is trusted). Entries that are not IP addresses end the walk at the hop before them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Final

from tollway.settings import IPNetwork

_FOR: Final = re.compile(r'(?:^|[;,\s])for=("?)([^";,]+)\1', re.IGNORECASE)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> Address | None:
    value = text.strip()
    if value.startswith("["):  # Forwarded: "[2001:db8::1]:4711"
        value = value[1 : value.find("]")] if "]" in value else value
    elif value.count(":") == 1:  # "192.0.2.1:4711"
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(address: Address, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def forwarded_chain(headers: Sequence[tuple[bytes, bytes]]) -> list[str]:
    """The hops the proxy headers name, client first: every ``X-Forwarded-For`` line, else every ``Forwarded``."""
    xff = [v.decode("latin-1") for k, v in headers if k.lower() == b"x-forwarded-for"]
    if xff:
        return [part.strip() for line in xff for part in line.split(",") if part.strip()]
    forwarded = [v.decode("latin-1") for k, v in headers if k.lower() == b"forwarded"]
    return [match.group(2) for line in forwarded for match in _FOR.finditer(line)]


def client_host(peer: str | None, headers: Sequence[tuple[bytes, bytes]], networks: Sequence[IPNetwork]) -> str | None:
    """The address to use for ``peer``'s request: ``peer`` itself unless it is a trusted proxy."""
    if not networks or peer is None:
        return peer
    current = _address(peer)
    if current is None or not _trusted(current, networks):
        return peer
    for hop in reversed(forwarded_chain(headers)):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not _trusted(address, networks):
            break
    return str(current)
