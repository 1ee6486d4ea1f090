"""Console sign-in (SPEC §17.1): a key is exchanged for a server-side session; the browser holds only the session id.

Sign-in authenticates the key through the API's ``Authenticator`` (same lookup, same failure throttle). Every later
request re-checks the key the session was opened with, by id, through the same lookup conditions (cached ≤ 0.9 s),
so a revoked key, a deleted platform or end user, or a rotated operator key ends the session at its next request.
Sessions also end after 12 h without a request, and at sign-out.

A form that creates a secret (a key, a webhook signing secret) leaves it, sealed for its session, beside the session
and redirects to the page that shows it (post/redirect/get), named by a random id: that page takes it once, so
reloading it neither re-sends the form nor shows the secret again, and the secret is never in a URL. A session may
hold several (forms sent from several tabs: up to ``MAX_PENDING_SECRETS``), each shown once by its own page; one
not shown within ``SHOWN_ONCE_TTL`` (10 minutes: time enough to follow a redirect, short enough that an abandoned
secret does not wait at rest for the session's 12 h) is deleted unseen, by the next form or the hourly pruning, and
never shown after that."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import orjson

from tollway.domain.clock import utcnow
from tollway.domain.console import (
    IDLE_EXPIRY,
    SHOWN_ONCE_TTL,
    ShownOnce,
    StoredSession,
    session_digest,
    shown_once_context,
)
from tollway.domain.keys import KeyKind
from tollway.domain.ports.console import ConsoleSessionStore
from tollway.domain.sealing import Sealer, SealError
from tollway.domain.tenancy import Principal
from tollway.errors import Forbidden
from tollway.services.auth import Authenticator

MAX_SESSION_ID_CHARS: Final = 128
DISPLAY_ID_CHARS: Final = 22  # secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class ActiveSession:
    """A live session as a request sees it: who is signed in and the CSRF token its forms carry."""

    id_hash: bytes
    principal: Principal
    csrf_token: str


class ConsoleSessions:
    def __init__(self, store: ConsoleSessionStore, authenticator: Authenticator, sealer: Sealer) -> None:
        self._store = store
        self._auth = authenticator
        self._sealer = sealer

    async def sign_in(self, raw_key: str, client_ip: str, now: datetime | None = None) -> tuple[str, ActiveSession]:
        """``(session id for the cookie, the session)``; a bad key raises the API's 401 (or its throttle's 429), a
        platform key without ``manage`` 403 ``forbidden``."""
        principal = await self._auth.authenticate(f"Bearer {raw_key.strip()}", client_ip)
        if principal.kind is KeyKind.PLATFORM and not principal.has_scope("manage"):
            raise Forbidden("The console needs a platform key with the 'manage' scope.")
        operator_check = await self._auth.operator_check() if principal.kind is KeyKind.OPERATOR else None
        session_id = secrets.token_urlsafe(32)
        moment = now or utcnow()
        stored = StoredSession(
            id_hash=session_digest(session_id),
            kind=principal.kind,
            key_id=principal.key_id,
            operator_check=operator_check,
            platform_id=principal.platform_id,
            end_user_id=principal.end_user_id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=moment,
            last_seen_at=moment,
        )
        await self._store.create(stored)
        return session_id, ActiveSession(stored.id_hash, principal, stored.csrf_token)

    async def resume(self, session_id: str | None, now: datetime | None = None) -> ActiveSession | None:
        """The live session of this id, or None (unknown, idle for 12 h, or its key no longer valid: then the
        session is deleted)."""
        if not session_id or len(session_id) > MAX_SESSION_ID_CHARS:
            return None
        id_hash = session_digest(session_id)
        stored = await self._store.find(id_hash)
        if stored is None:
            return None
        moment = now or utcnow()
        principal = None if stored.idle_expired(moment) else await self._principal(stored)
        if principal is None:
            await self._store.delete(id_hash)
            return None
        if stored.due_touch(moment):
            await self._store.touch(id_hash, moment)
        return ActiveSession(id_hash, principal, stored.csrf_token)

    async def sign_out(self, session: ActiveSession) -> None:
        await self._store.delete(session.id_hash)

    async def show_once(self, session: ActiveSession, shown: ShownOnce, now: datetime | None = None) -> str:
        """Keeps ``shown`` (sealed with the secret key, for this session only) for its page, until ``SHOWN_ONCE_TTL``;
        returns the random id that page is opened with. Others the session holds stay until shown or expired."""
        display_id = secrets.token_urlsafe(16)
        moment = now or utcnow()
        payload = orjson.dumps({"at": moment.timestamp(), "shown": shown}).decode()
        sealed = self._sealer.seal(payload, shown_once_context(session.id_hash))
        await self._store.hold_shown_once(session.id_hash, display_id, sealed, moment + SHOWN_ONCE_TTL, moment)
        return display_id

    async def take_shown_once(
        self, session: ActiveSession, display_id: str | None, now: datetime | None = None
    ) -> ShownOnce | None:
        """What ``show_once`` kept for ``display_id``, the first time only, and only within ``SHOWN_ONCE_TTL``."""
        if not display_id or len(display_id) != DISPLAY_ID_CHARS:
            return None
        moment = now or utcnow()
        sealed = await self._store.take_shown_once(session.id_hash, display_id, moment)
        if sealed is None:
            return None
        try:
            held = orjson.loads(self._sealer.open(sealed, shown_once_context(session.id_hash)))
        except SealError:  # the secret key changed since
            return None
        if moment - datetime.fromtimestamp(held["at"], UTC) > SHOWN_ONCE_TTL:
            return None
        return ShownOnce(**held["shown"])

    async def prune(self, now: datetime) -> int:
        """Ends the sessions idle for 12 h and deletes every secret left unseen past ``SHOWN_ONCE_TTL``."""
        return await self._store.prune(now - IDLE_EXPIRY, now)

    async def _principal(self, stored: StoredSession) -> Principal | None:
        if stored.kind is KeyKind.OPERATOR:
            current = await self._auth.operator_check()
            if current is None or stored.operator_check is None:
                return None
            return (
                Principal(kind=KeyKind.OPERATOR, key_id=None)
                if hmac.compare_digest(current, stored.operator_check)
                else None
            )
        if stored.key_id is None:
            return None
        principal = await self._auth.principal_by_key_id(stored.key_id)
        if principal is None or principal.kind is not stored.kind or principal.platform_id != stored.platform_id:
            return None
        if principal.kind is KeyKind.PLATFORM and not principal.has_scope("manage"):
            return None
        return principal
