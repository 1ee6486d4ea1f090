"""Agent threads (SPEC §16.4): the stored context of ``POST /v1/responses`` calls made with ``thread_id``."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime

from tollway_sdk._models import TollwayModel


class Thread(TollwayModel):
    id: str
    object: str = "thread"
    created_at: AwareDatetime
    updated_at: AwareDatetime
    response_count: int
    metadata: dict[str, Any] | None = None


class PlatformThread(Thread):
    """A thread as its platform lists it: whose it is."""

    end_user_id: str | None = None


ThreadItem = dict[str, Any]
"""An input or output item of a thread, as the Responses API defines it (``type``, ``role``, ``content``...)."""
