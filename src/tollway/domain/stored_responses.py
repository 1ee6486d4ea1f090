"""The values of a stored response (SPEC §7.6), kept through ``domain.ports.inference.ResponseRepository``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Owner:
    """Who may read a stored response: its platform and end user (None for platform keys, SPEC §15)."""

    platform_id: str
    end_user_id: str | None


@dataclass(frozen=True, slots=True)
class StoredResponse:
    # The expanded input (the whole context the call was made with); for a turn of an agent thread (SPEC §16.4),
    # the input of its own request only: the thread's earlier turns hold the rest.
    input_items: list[dict[str, Any]]
    body: dict[str, Any]  # the result object, output and metadata included
    thread_key: str | None = None  # the thread's row, for a thread turn
    thread_seq: int | None = None  # its place in the thread: 1, 2, …
