"""One-time keys of the console's money forms (SPEC §17.1, §9.7): each rendering of a form that moves money (Add
funds, an operator's wallet top-up, an end user's budget: its top-up, changes and suspension) carries a fresh random
key in a hidden field, and the operation runs under an Idempotency-Key derived from that key and the session (an
HMAC keyed by the session's CSRF secret). A form sent twice (a double click, a browser resubmitting it) is one
operation: the second sending gets the first one's answer, and waits for it while the first still runs. The same key
sent from another session is another operation (it cannot replay this session's answer)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from tollway.errors import IdempotencyInProgress, InvalidRequest
from tollway.http.console.forms import Form
from tollway.services.console.sessions import ActiveSession

FIELD: Final = "idempotency_key"
_MAX_CHARS: Final = 64
_WAIT_S: Final = 10.0  # how long a second sending waits for the first one's answer
_POLL_S: Final = 0.05
T = TypeVar("T")


def new_form_key() -> str:
    """The hidden field's value for one rendering of a form."""
    return secrets.token_urlsafe(16)


def idempotency_key(session: ActiveSession, submitted: Form) -> str:
    """The Idempotency-Key of the operation this form runs, bound to the session; 400 at ``idempotency_key`` when
    the form carries none (every rendered money form has one)."""
    raw = submitted.text(FIELD)
    if raw is None or len(raw) > _MAX_CHARS:
        raise InvalidRequest("This form's one-time key is missing or malformed; reload the page and try again.", FIELD)
    digest = hmac.new(session.csrf_token.encode(), raw.encode(), hashlib.sha256).hexdigest()
    return f"console-{digest}"


async def first_answer(run: Callable[[], Awaitable[T]]) -> T:
    """``run`` (an operation under the form's key); while the same form's first sending still runs, waits for its
    answer (the replay) instead of showing the browser a 409."""
    deadline = time.monotonic() + _WAIT_S
    while True:
        try:
            return await run()
        except IdempotencyInProgress:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(_POLL_S)
