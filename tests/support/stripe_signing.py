"""Stripe's webhook signature scheme, computed independently of the ``stripe`` library: ``Stripe-Signature:
t=<unix seconds>,v1=<hex HMAC-SHA256 keyed with the endpoint secret over "<t>.<raw body>">``."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import orjson


def signature(payload: bytes, secret: str, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signed(event: Any, secret: str, at: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one delivery of ``event`` (a dict, or raw bytes sent as they are)."""
    payload = event if isinstance(event, bytes) else orjson.dumps(event)
    headers = {"Stripe-Signature": signature(payload, secret, at), "Content-Type": "application/json; charset=utf-8"}
    return payload, headers
