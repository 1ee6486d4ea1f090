"""Authentication (SPEC §2.2, §2.3): bearer key -> Principal, with a ≤ 1 s positive cache and the failure throttle.

Unknown keys, the operator key and platform/end-user keys all go through one digest lookup; failures are never
cached, so a revoked key stops working on every instance within the cache lifetime.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

from tollway.domain.clock import utcnow
from tollway.domain.keys import END_USER_SCOPES, PLATFORM_SCOPES, KeyKind, key_digest
from tollway.domain.ports.inference import KeyLookup
from tollway.domain.tenancy import KeyRecord, Principal
from tollway.errors import AuthenticationError, RateLimited
from tollway.services.gathered_refresh import GatheredRefresh

log = logging.getLogger("tollway.auth")

POSITIVE_CACHE_S = 0.9
REFRESH_AFTER_S = 0.5  # looked up again in the background from here on
# Background lookups are gathered for this long and made in one query: with many end users' keys in use, a query
# per key and refresh (two a second each) cost a third of a busy instance's CPU on SQLite (issue 18).
REFRESH_GATHER_S = 0.05
# A key used within this long is kept fresh by the gathered refreshes themselves, request or not: when requests
# for a key come further apart than its entry lives (many end users, traffic spread over instances), each one would
# otherwise find its entry expired and wait for its own lookup.
KEEP_FRESH_S = 10.0
_TOUCH_EVERY_S = 60.0
_FAILURE_WINDOW_S = 60.0
_OPERATOR_REFRESH_S = 0.9
_DUMMY_DIGEST = b"\x00" * 32

_Found = tuple[Principal | None, float | None]  # a key's principal (None: refused) and when it expires, monotonic


class Authenticator:
    def __init__(
        self,
        keys: KeyLookup,
        operator_digest: Callable[[], Awaitable[bytes | None]],
        failure_limit: int,
        clock: Callable[[], float] = time.monotonic,
        keep_fresh_s: float = KEEP_FRESH_S,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._operator_digest_source = operator_digest
        self._operator_digest: bytes | None = None
        self._operator_checked_at = float("-inf")
        self._failure_limit = failure_limit
        self._cache: dict[bytes, tuple[float, Principal, float | None]] = {}
        self._by_id: dict[str, tuple[float, Principal, float | None]] = {}
        self._touched: dict[str, float] = {}
        self._failures: dict[str, deque[float]] = {}
        self.pending_touches: set[str] = set()
        # Refresh-ahead (as ``services/freshness.py``), gathered: due keys are looked up again in one query while
        # their cached principals are still served; a key that is gone is dropped, so its next request is refused.
        # A key carries whether it is shaped like the operator key.
        self._refreshes: GatheredRefresh[bytes, bool, _Found] = GatheredRefresh(
            self._refresh,
            self._refreshed,
            lambda digest: digest in self._cache,
            refresh_after_s=REFRESH_AFTER_S,
            gather_s=REFRESH_GATHER_S,
            keep_fresh_s=keep_fresh_s,
            log=log,
            what="key lookup",
            clock=clock,
        )
        self._refreshing, self._used = self._refreshes.pending, self._refreshes.used  # read on every request

    def invalidate(self) -> None:
        """Drop every cached lookup (called after this instance revokes or deletes something)."""
        self._cache.clear()
        self._by_id.clear()
        self._refreshes.invalidate()
        self._operator_checked_at = float("-inf")

    async def authenticate(self, authorization: str | None, client_ip: str) -> Principal:
        """The principal of an ``Authorization: Bearer <key>`` header."""
        return await self.authenticate_key(_bearer(authorization), client_ip)

    async def authenticate_key(self, raw: str | None, client_ip: str) -> Principal:
        """The principal of a key as sent (``None`` or a malformed header counts as a failed attempt)."""
        now = self._clock()
        if raw is not None and (not raw or len(raw) > 512):
            raw = None
        if raw is None:
            self._record_failure(client_ip, now)
            raise AuthenticationError()
        digest = key_digest(raw)
        cached = self._cache.get(digest)
        if cached is not None:
            cached_at, principal, expires_mono = cached
            if now - cached_at < POSITIVE_CACHE_S and (expires_mono is None or now < expires_mono):
                if now - cached_at >= REFRESH_AFTER_S and digest not in self._refreshing:
                    self._refreshes.queue(digest, raw.startswith("sk-admin_"))
                self._used[digest] = now
                self._note_use(principal, now)
                return principal
            del self._cache[digest]
        generation = self._refreshes.generation  # a lookup begun before invalidate() answers its request, unkept
        found, expires_mono = await self._lookup(raw, digest, now)
        if found is None:
            self._record_failure(client_ip, now)
            raise AuthenticationError()
        if generation != self._refreshes.generation:
            self._note_use(found, now)
            return found
        if len(self._cache) > 100_000:
            self._cache.clear()
            self._refreshes.sweep(now)
        self._cache[digest] = (now, found, expires_mono)
        self._used[digest] = now
        self._refreshes.keep(digest, raw.startswith("sk-admin_"))  # kept fresh from now on while in use
        self._note_use(found, now)
        return found

    async def _refresh(self, due: Mapping[bytes, bool], started: float) -> dict[bytes, _Found]:
        operator = await self._current_operator_digest(started)
        records = await self._keys.find_active_many(list(due))
        return {d: self._resolve(shaped, d, operator, records.get(d), started) for d, shaped in due.items()}

    def _refreshed(self, digest: bytes, found: _Found, started: float) -> bool:
        principal, expires_mono = found
        if principal is None:
            self._cache.pop(digest, None)
            return False
        self._cache[digest] = (started, principal, expires_mono)
        return True

    async def close(self) -> None:
        """At shutdown: no background lookup left running."""
        await self._refreshes.close()

    async def _lookup(self, raw: str, digest: bytes, now: float) -> tuple[Principal | None, float | None]:
        operator = await self._current_operator_digest(now)
        record = await self._keys.find_active(digest)
        return self._resolve(raw.startswith("sk-admin_"), digest, operator, record, now)

    def _resolve(
        self, operator_shaped: bool, digest: bytes, operator: bytes | None, record: KeyRecord | None, now: float
    ) -> tuple[Principal | None, float | None]:
        # Same code path for every key: the operator comparison runs for all of them, in constant time.
        is_operator = hmac.compare_digest(digest, operator or _DUMMY_DIGEST) and operator is not None
        if is_operator and operator_shaped:
            return Principal(kind=KeyKind.OPERATOR, key_id=None), None
        if record is None:
            return None, None
        principal, expires_mono = _principal(record, now)
        if principal is not None and record.last_used_at is not None:
            self._touched.setdefault(record.id, now)
        return principal, expires_mono

    async def principal_by_key_id(self, key_id: str) -> Principal | None:
        """The principal of a live key named by id (console sessions re-check the key they were opened with): the
        API's lookup conditions, cached like a digest lookup (≤ 0.9 s, dropped by ``invalidate``)."""
        now = self._clock()
        cached = self._by_id.get(key_id)
        if cached is not None and now - cached[0] < POSITIVE_CACHE_S and (cached[2] is None or now < cached[2]):
            return cached[1]
        record = await self._keys.find_active_by_id(key_id)
        principal, expires_mono = (None, None) if record is None else _principal(record, now)
        if principal is None:
            self._by_id.pop(key_id, None)
            return None
        if len(self._by_id) > 100_000:
            self._by_id.clear()
        self._by_id[key_id] = (now, principal, expires_mono)
        return principal

    async def operator_check(self) -> bytes | None:
        """A digest of the current operator key's digest (None when there is none): a console session of the
        operator ends when it changes (``tollway rotate-admin-key``)."""
        digest = await self._current_operator_digest(self._clock())
        return None if digest is None else hashlib.sha256(digest).digest()

    async def _current_operator_digest(self, now: float) -> bytes | None:
        if now - self._operator_checked_at >= _OPERATOR_REFRESH_S:
            self._operator_digest = await self._operator_digest_source()
            self._operator_checked_at = now
        return self._operator_digest

    def _note_use(self, principal: Principal, now: float) -> None:
        key_id = principal.key_id
        if key_id is None:
            return
        last = self._touched.get(key_id)
        if last is None or now - last >= _TOUCH_EVERY_S:
            self._touched[key_id] = now
            self.pending_touches.add(key_id)

    def check_throttle(self, client_ip: str) -> None:
        """Before authenticating: an IP over the failure limit in the window gets 429 (valid keys included
        would be wrong, so callers invoke this only after a failed lookup)."""
        if self._failure_limit <= 0:
            return
        window = self._failures.get(client_ip)
        if window is None:
            return
        now = self._clock()
        while window and now - window[0] >= _FAILURE_WINDOW_S:
            window.popleft()
        if len(window) > self._failure_limit:
            retry = int(_FAILURE_WINDOW_S - (now - window[0])) + 1
            raise RateLimited("Too many failed authentication attempts from this address; retry later.", retry)

    def _record_failure(self, client_ip: str, now: float) -> None:
        if self._failure_limit <= 0:
            return
        window = self._failures.setdefault(client_ip, deque())
        window.append(now)
        if len(window) > self._failure_limit + 1:
            window.popleft()
        if len(self._failures) > 50_000:
            self._failures.clear()
        self.check_throttle(client_ip)


def _principal(record: KeyRecord, now: float) -> tuple[Principal | None, float | None]:
    """The principal of a stored key, and when it expires on the monotonic clock (None: an expired key)."""
    expires_mono: float | None = None
    if record.expires_at is not None:
        remaining = (record.expires_at - utcnow()).total_seconds()
        if remaining <= 0:
            return None, None
        expires_mono = now + remaining
    kind = KeyKind.PLATFORM if record.type == "platform" else KeyKind.END_USER
    allowed = PLATFORM_SCOPES if kind is KeyKind.PLATFORM else END_USER_SCOPES
    principal = Principal(
        kind=kind,
        key_id=record.id,
        platform_id=record.platform_id,
        end_user_id=record.end_user_id,
        scopes=frozenset(record.scopes) & allowed,
        end_user_active=record.end_user_active,
    )
    return principal, expires_mono


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        return None
    return token
