"""Webhook events, their envelope, Standard Webhooks signing and the retry schedule (SPEC §11). Pure functions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import orjson

from tollway.domain.clock import rfc3339
from tollway.domain.money import nanos_to_json_number

API_VERSION: Final = "2026-05-01"
SECRET_PREFIX: Final = "whsec_"
ROTATION_GRACE: Final = timedelta(hours=24)
ATTEMPT_TIMEOUT_S: Final = 15.0
EXCERPT_BYTES: Final = 1024


class EventType(StrEnum):
    BUDGET_TOPPED_UP = "budget.topped_up"
    BUDGET_LOW_BALANCE = "budget.low_balance"
    BUDGET_SUSPENDED = "budget.suspended"
    BUDGET_UNSUSPENDED = "budget.unsuspended"
    BUDGET_DEBITED = "budget.debited"
    WALLET_LOW_BALANCE = "wallet.low_balance"
    WALLET_TOPPED_UP = "wallet.topped_up"  # an operator or card top-up (SPEC §4.3, §17.2)


ALL_EVENTS: Final = tuple(e.value for e in EventType)
DEFAULT_EVENTS: Final = tuple(e for e in ALL_EVENTS if e != EventType.BUDGET_DEBITED)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes (§11.3)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def new_webhook_id() -> str:
    return "msg_" + os.urandom(16).hex()


def event_id(transaction_id: str, event_type: str) -> str:
    return f"{transaction_id}:{event_type}"


def _usd(nanos: int | None) -> Any:
    return None if nanos is None else nanos_to_json_number(int(nanos))


def budget_data(
    *,
    platform_id: str,
    end_user_id: str,
    external_id: str | None,
    budget_id: str,
    transaction_id: str,
    txn_type: str,
    amount_nanos: int,
    max_after_nanos: int,
    used_after_nanos: int,
    threshold_nanos: int | None,
    reason: str | None,
    metadata: Mapping[str, Any] | None,
    request_id: str | None,
) -> dict[str, Any]:
    """The ``data`` of a budget event (§11.2): the ledger row with the budget's state after it."""
    return {
        "platform_id": platform_id,
        "end_user_id": end_user_id,
        "external_id": external_id,
        "budget_id": budget_id,
        "transaction_id": transaction_id,
        "type": txn_type,
        "amount_usd": _usd(amount_nanos),
        "max_usd_after": _usd(max_after_nanos),
        "used_usd_after": _usd(used_after_nanos),
        "remaining_usd_after": _usd(max_after_nanos - used_after_nanos),
        "threshold_usd": _usd(threshold_nanos),
        "reason": reason,
        "metadata": dict(metadata or {}),
        "request_id": request_id,
    }


def wallet_data(
    *,
    platform_id: str,
    wallet_id: str,
    transaction_id: str,
    txn_type: str,
    amount_nanos: int,
    balance_after_nanos: int,
    threshold_nanos: int | None,
    request_id: str | None,
) -> dict[str, Any]:
    """The ``data`` of a wallet event (§11.2)."""
    return {
        "platform_id": platform_id,
        "wallet_id": wallet_id,
        "transaction_id": transaction_id,
        "type": txn_type,
        "amount_usd": _usd(amount_nanos),
        "balance_usd_after": _usd(balance_after_nanos),
        "threshold_usd": _usd(threshold_nanos),
        "request_id": request_id,
    }


def envelope(event_type: str, transaction_id: str, created_at: datetime, data: Mapping[str, Any]) -> bytes:
    """The exact bytes POSTed on every attempt and replay of the event (§11.2)."""
    body = {
        "event_type": event_type,
        "event_id": event_id(transaction_id, event_type),
        "api_version": API_VERSION,
        "created_at": rfc3339(created_at),
        "data": data,
    }
    return orjson.dumps(body)


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "<id>.<ts>.<body>">`` keyed with the base64-decoded part of the secret."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    message = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets_in_force: Sequence[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    """One signature per secret in force (two during a rotation's grace period), space-separated."""
    return " ".join(sign(s, webhook_id, timestamp, body) for s in secrets_in_force)


def next_attempt_delay(delays_s: Sequence[float], attempts_made: int, jitter_fraction: float) -> timedelta | None:
    """The wait before the next attempt after ``attempts_made`` failed ones; None when that was the last.
    ``jitter_fraction`` in [0, 1) scales the up-to-10 % growth (§11.4)."""
    if attempts_made < 1 or attempts_made > len(delays_s):
        return None
    base = delays_s[attempts_made - 1]
    return timedelta(seconds=base * (1 + 0.1 * min(max(jitter_fraction, 0.0), 1.0)))


def subscribed(events: Iterable[str], event_type: str) -> bool:
    return event_type in events
