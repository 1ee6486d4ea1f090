"""The SSRF rules of webhook URLs (SPEC §11.5): ``https`` only, no credentials, and every address public.

Pure functions: the URL check runs on create and update, the address check again on every connection, against the
address actually dialled (``workers/webhooks.py`` installs it as the aiohttp resolver).
"""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4_REFUSED: Final = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # unspecified / "this network"
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # CGNAT (RFC 6598)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
_V6_REFUSED: Final = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/128",  # unspecified
        "::1/128",  # loopback
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
        "100::/64",  # discard-only
        "2001:db8::/32",  # documentation
    )
)
# IPv6 forms that carry an IPv4 address inside: the embedded address decides.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")


class UnsafeUrl(ValueError):
    """The URL breaks a rule of §11.5; the message says which (never echoes credentials)."""


def embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address of an IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible, NAT64 or 6to4 form."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _V4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """False for loopback, private, unique-local, link-local, CGNAT, unspecified, multicast and reserved addresses,
    including IPv6 forms that embed such an IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        inner = embedded_v4(address)
        if inner is not None:
            return is_public(inner)
        return not any(address in net for net in _V6_REFUSED)
    return not any(address in net for net in _V4_REFUSED)


def parse_address(text: str) -> IPAddress | None:
    """An IP literal (brackets and IPv6 zone allowed), or None for a host name."""
    host = text.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if "%" in host:
        try:
            return ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
    return None


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL's host name once its form is acceptable; ``UnsafeUrl`` otherwise. A literal address must be public
    (unless ``allow_private``); names are resolved and checked by the caller (``services/webhooks.py``)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl("url must be an absolute https URL with a valid host and port.") from exc
    del port
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise UnsafeUrl("url must use https.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeUrl("url must not contain credentials.")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("url must have a host.")
    if parts.fragment:
        raise UnsafeUrl("url must not contain a fragment.")
    literal = parse_address(host)
    if literal is not None and not allow_private and not is_public(literal):
        raise UnsafeUrl("url must point to a public address; private, loopback and link-local ones are refused.")
    if literal is None and not allow_private and host.rstrip(".").lower() in ("localhost", "localhost.localdomain"):
        raise UnsafeUrl("url must point to a public address; private, loopback and link-local ones are refused.")
    return host
