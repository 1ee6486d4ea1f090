"""The money port of the call lifecycle: one writer per instance that places holds and settles them (SPEC §9)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from tollway.domain.holds import Checkpoint, HoldGrant, HoldRequest, MoneyCommand, Refusal


class MoneyLedger(Protocol):
    """The instance's money writer: hold placement is awaited; the rest is queued and committed in batches."""

    async def place_hold(self, request: HoldRequest) -> HoldGrant | Refusal: ...

    async def confirm(self, hold_id: str) -> None:
        """Return once a granted hold is durable; raise when it could not be recorded (it does not exist)."""
        ...

    def submit(self, command: MoneyCommand) -> asyncio.Future[Any]:
        """Queue a command; a settlement or a checkpoint is in the instance's journal when this returns."""
        ...

    def provisional(self, command: Checkpoint) -> None:
        """A stream's progress written to the journal only (nothing for the database): its opening, before any
        content, so that a crash right after it still bills the stream as one cut before any output (SPEC §9.4)."""
        ...
