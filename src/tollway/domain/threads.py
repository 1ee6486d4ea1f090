"""Agent threads (SPEC §16.4): the caller-chosen thread of a Responses request, its validation, and what a thread's
stored turns become (the context of its next request, the items it lists). Pure; no I/O.

A thread is owned by a platform and an end user (None for platform keys), like a stored response; its id is the
caller's, so two owners may use the same id for two different threads. Each stored turn keeps the input of its own
request only (never the rebuilt context), so a thread costs O(turns) storage, not O(turns²).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from tollway.domain.responses_items import output_as_input
from tollway.domain.stored_responses import StoredResponse
from tollway.errors import InvalidRequest

THREAD_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A claim lasts ``TOLLWAY_THREAD_LEASE_S`` and the request holding it renews it this many times per lease, so one
# or two renewals may fail (a slow or briefly unreachable database) before it could lapse under a running request,
# while an instance that dies frees its threads within one lease.
RENEWALS_PER_LEASE: Final = 3
_ID_RULE: Final = "1 to 64 letters, digits, underscores or dashes"


@dataclass(frozen=True, slots=True)
class Thread:
    id: str  # the caller's id
    end_user_id: str | None
    created_at: datetime
    updated_at: datetime  # creation, or the last appended response
    response_count: int  # stored responses of the thread not yet past their retention
    metadata: dict[str, str]  # the metadata of the request that created the thread


@dataclass(frozen=True, slots=True)
class ThreadLease:
    """A claimed thread: ``key`` is its row, ``holder`` the request id that holds it until released or expired."""

    key: str
    thread_id: str
    holder: str


class Deletion(StrEnum):
    DELETED = "deleted"
    MISSING = "missing"
    BUSY = "busy"


def parse_thread(body: dict[str, Any]) -> str | None:
    """The thread a Responses body names by ``thread_id`` or its OpenAI alias ``conversation`` (a string or
    ``{"id"}``); both may be sent only when they agree. Refused with ``previous_response_id`` (a thread already
    carries the context) and with ``store: false`` (a thread keeps every response it holds)."""
    thread = _thread_id(body.get("thread_id"))
    conversation = _conversation(body.get("conversation"))
    if thread is not None and conversation is not None and thread != conversation:
        raise InvalidRequest(
            "thread_id and conversation name different threads; conversation is an alias of thread_id, "
            "so send one of them (or the same id in both).",
            "conversation",
        )
    chosen = thread if thread is not None else conversation
    if chosen is None:
        return None
    field = "thread_id" if thread is not None else "conversation"
    if body.get("previous_response_id") is not None:
        raise InvalidRequest(
            f"{field} and previous_response_id cannot be used together: a thread already carries the context of "
            "its earlier responses. Send one of them.",
            "previous_response_id",
        )
    if body.get("store") is False:
        raise InvalidRequest(
            f"store: false cannot be used with {field}: a thread keeps every response it holds. "
            "Omit store or set it to true.",
            "store",
        )
    return chosen


def _thread_id(value: object) -> str | None:
    if value is None:
        return None
    if type(value) is not str or THREAD_ID.fullmatch(value) is None:
        raise InvalidRequest(f"thread_id must be {_ID_RULE}.", "thread_id")
    return value


def _conversation(value: object) -> str | None:
    if value is None:
        return None
    if type(value) is dict:
        if set(value) != {"id"}:
            raise InvalidRequest('conversation must be a thread id or an object {"id": <thread id>}.', "conversation")
        value = value["id"]
        if type(value) is not str or THREAD_ID.fullmatch(value) is None:
            raise InvalidRequest(f"conversation.id must be {_ID_RULE}.", "conversation.id")
        return value
    if type(value) is not str or THREAD_ID.fullmatch(value) is None:
        raise InvalidRequest(
            f'conversation must be a thread id ({_ID_RULE}) or an object {{"id": <thread id>}}.', "conversation"
        )
    return value


def thread_context(turns: list[StoredResponse]) -> list[dict[str, Any]]:
    """The context a thread gives its next request: each turn's own input, then its output as input, in order."""
    items: list[dict[str, Any]] = []
    for turn in turns:
        items += turn.input_items
        items += output_as_input(turn.body["output"])
    return items


def thread_items(turns: list[StoredResponse]) -> list[dict[str, Any]]:
    """What ``GET /v1/threads/{id}/items`` lists: each turn's input items, then its output items as answered."""
    items: list[dict[str, Any]] = []
    for turn in turns:
        items += turn.input_items
        items += turn.body["output"]
    return items
