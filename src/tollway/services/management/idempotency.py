"""The Idempotency-Key protocol of SPEC §9.7 for management writes (budget topup, debit and PATCH; operator wallet
topup; a card top-up's Checkout Session): validation of the header, the request fingerprint, and running an
operation at most once per key with its first outcome stored and replayed byte for byte.

The order is the SPEC's: access checks, then body validation (callers do both first), then the key, then the
operation. 400/401/403/413 and 5xx outcomes are not stored, so the key stays usable after them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, TypeVar

import orjson

from tollway.domain.clock import utcnow
from tollway.domain.idempotency import Claim, IdempotencyIdentity, StoredResponse
from tollway.domain.ports.management import Action, IdempotencyClaims, UnitOfWork, UnitOfWorkFactory
from tollway.errors import IdempotencyInProgress, IdempotencyKeyMismatch, InvalidRequest, TollwayError

T = TypeVar("T")

HEADER: Final = "Idempotency-Key"
RETENTION: Final = timedelta(hours=24)
# How long a claim may stay in progress before another request may take the key over (its owner died). An owner
# slower than this cannot commit twice: completing a claim that was taken over fails and rolls back.
CLAIM_LEASE: Final = timedelta(seconds=60)
_NOT_STORED: Final = frozenset({400, 401, 403, 413})
_KEY_MAX: Final = 255


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    identity: IdempotencyIdentity
    fingerprint: str

    def derived_key(self, purpose: str) -> str:
        """The key another service deduplicates this request's call by (Stripe's ``Idempotency-Key``): the same for
        the same scope, path, key and body, so a retry after a crash between the call and storing its outcome
        makes the same call again rather than a second one; different across tenants, which share that service's
        key space. 64 hex digits after ``purpose``."""
        ident = self.identity
        parts = (purpose, ident.scope, ident.method, ident.path, ident.key, self.fingerprint)
        return f"{purpose}-" + hashlib.sha256(orjson.dumps(parts)).hexdigest()


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: bytes
    replayed: bool

    @property
    def headers(self) -> dict[str, str]:
        return {"Idempotent-Replayed": "true"} if self.replayed else {}


def parse_key(value: str | None) -> str | None:
    """The header's value: 1–255 printable ASCII characters (space to tilde), else 400 at ``Idempotency-Key``."""
    if value is None:
        return None
    if not 1 <= len(value) <= _KEY_MAX or not all(" " <= ch <= "~" for ch in value):
        raise InvalidRequest(f"{HEADER} must be 1 to {_KEY_MAX} printable ASCII characters.", HEADER)
    return value


def fingerprint(body: Mapping[str, Any]) -> str:
    """SHA-256 of the body's canonical JSON: sorted keys, no whitespace, numbers by exact value (``1.50``, ``1.5``
    and ``15e-1`` are one number), so formatting differences do not matter."""
    canonical = orjson.dumps(_canonical(body), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _canonical(value: object) -> object:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return orjson.Fragment(str(value).encode())  # also integers beyond 64 bits
    if isinstance(value, Decimal):
        return orjson.Fragment(_decimal_text(value).encode())
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value


def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():  # the body parser rejects these; kept total anyway
        return orjson.dumps(str(value)).decode()
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def idempotent_request(
    scope: str, method: str, path: str, header: str | None, body: Mapping[str, Any]
) -> IdempotentRequest | None:
    """None when the request carries no key (the operation then simply runs)."""
    key = parse_key(header)
    if key is None:
        return None
    return IdempotentRequest(IdempotencyIdentity(scope, method, path, key), fingerprint(body))


class Idempotency:
    def __init__(self, claims: IdempotencyClaims, unit_of_work: UnitOfWorkFactory) -> None:
        self._claims = claims
        self._unit_of_work = unit_of_work

    async def execute(
        self,
        request: IdempotentRequest | None,
        action: Action[T],
        render: Callable[[T], StoredResponse],
        now: datetime | None = None,
    ) -> Outcome:
        """Runs ``action`` in one transaction and renders its result, or replays the key's stored outcome. With a key,
        the record is completed in the action's transaction, so it commits together with the ledger rows."""
        return await self._once(request, lambda claim: self._run(action, render, claim), now)

    async def execute_call(
        self,
        request: IdempotentRequest | None,
        call: Callable[[], Awaitable[T]],
        render: Callable[[T], StoredResponse],
        now: datetime | None = None,
    ) -> Outcome:
        """Like ``execute`` for an operation that writes no row of ours but calls another service (a payment
        gateway): ``call`` runs outside any transaction and the record is completed after it. The call must be
        deduplicated by the other service under ``request.derived_key`` so that a retry is never a second call."""

        async def run(claim: tuple[Claim, datetime] | None) -> StoredResponse:
            response = render(await call())
            if claim is not None and not await self._claims.store(claim[0], response, claim[1]):
                raise _ClaimLost
            return response

        return await self._once(request, run, now)

    async def _once(
        self,
        request: IdempotentRequest | None,
        run: Callable[[tuple[Claim, datetime] | None], Awaitable[StoredResponse]],
        now: datetime | None,
    ) -> Outcome:
        """``run`` once per key: a replay of the stored outcome, 422 for another body, 409 while the first runs."""
        if request is None:
            response = await run(None)
            return Outcome(response.status, response.body, replayed=False)
        claimed = await self._claims.claim(request.identity, request.fingerprint, now or utcnow(), CLAIM_LEASE)
        if not isinstance(claimed, Claim):
            if claimed.fingerprint != request.fingerprint:
                raise IdempotencyKeyMismatch(
                    f"This {HEADER} was used with a different request body; use a new key for a new request.", HEADER
                )
            if claimed.response is None:
                raise IdempotencyInProgress(f"A request with this {HEADER} is still being processed.", HEADER)
            return Outcome(claimed.response.status, claimed.response.body, replayed=True)
        expires_at = claimed.created_at + RETENTION
        try:
            response = await run((claimed, expires_at))
        except _ClaimLost:
            raise IdempotencyInProgress(f"A request with this {HEADER} is still being processed.", HEADER) from None
        except TollwayError as error:
            if error.status in _NOT_STORED or error.status >= 500:
                await self._claims.release(claimed)
            else:
                await self._claims.store(claimed, StoredResponse(error.status, orjson.dumps(error.body())), expires_at)
            raise
        except Exception:
            await self._claims.release(claimed)
            raise
        return Outcome(response.status, response.body, replayed=False)

    async def _run(
        self,
        action: Action[T],
        render: Callable[[T], StoredResponse],
        claim: tuple[Claim, datetime] | None = None,
    ) -> StoredResponse:
        """``action`` in one unit of work; with a claim, the record is completed in it before the commit."""
        uow: UnitOfWork
        async with self._unit_of_work() as uow:
            response = render(await action(uow))
            if claim is not None and not await uow.idempotency.complete(claim[0], response, claim[1]):
                raise _ClaimLost
            await uow.commit()
        return response


class _ClaimLost(Exception):
    """The claim was taken over while the action ran; the unit of work is rolled back."""
