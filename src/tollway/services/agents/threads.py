"""Agent threads (SPEC §16.4): the lease that serialises a thread's requests, the context a thread gives its next
response, the appending of that response, and the thread routes' reads and deletion.

A request on a thread claims it for ``TOLLWAY_THREAD_LEASE_S`` and renews the claim ``RENEWALS_PER_LEASE`` times per
lease for as long as it runs (an agent loop may run for many turns and slow tools, far longer than one lease); the
renewal stops when the claim is released (once the response is stored, or failed, or its stream ended however it
ended). An instance that dies stops renewing, so its claims expire within one lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from tollway.domain.clock import utcnow
from tollway.domain.ports.inference import ThreadRepository
from tollway.domain.stored_responses import Owner, StoredResponse
from tollway.domain.threads import RENEWALS_PER_LEASE, Deletion, Thread, ThreadLease, thread_context, thread_items
from tollway.errors import NotFound, ThreadBusy

log = logging.getLogger("tollway.threads")


def _missing(thread_id: str) -> NotFound:
    return NotFound(f"No thread with id '{thread_id[:64]}' was found.")


def _busy(thread_id: str) -> ThreadBusy:
    return ThreadBusy(
        f"Thread '{thread_id}' is busy: another request on it is still running. Retry once it has finished."
    )


class Threads:
    def __init__(self, repository: ThreadRepository, lease_s: float) -> None:
        self._repository = repository
        self._lease = timedelta(seconds=lease_s)
        self._renew_every_s = lease_s / RENEWALS_PER_LEASE
        # The claims this process holds, each with the event that stops its renewal (set, never cancelled: a
        # renewal is never cut off inside its database write).
        self._held: dict[ThreadLease, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- a request on a thread -------------------------------------------------------------------------------

    async def claim(self, owner: Owner, thread_id: str, holder: str, metadata: dict[str, str]) -> ThreadLease:
        """Take the thread for request ``holder`` (creating it on first use, with ``metadata``); 409 when busy. The
        claim is renewed until ``release`` or ``release_soon``."""
        lease = await self._repository.claim(owner, thread_id, holder, metadata, utcnow() + self._lease)
        if lease is None:
            raise _busy(thread_id)
        stop = self._held[lease] = asyncio.Event()
        self._spawn(self._renew(lease, stop))
        return lease

    async def _renew(self, lease: ThreadLease, stop: asyncio.Event) -> None:
        while True:
            try:
                await asyncio.wait_for(stop.wait(), self._renew_every_s)
                return  # released
            except TimeoutError:
                pass
            try:
                kept = await self._repository.renew(lease, utcnow() + self._lease)
            except Exception:  # tried again at the next interval, well within the lease
                log.warning("could not renew the lease of thread %s", lease.thread_id, exc_info=True)
                continue
            if not kept:
                log.warning("thread %s: request %s no longer holds it", lease.thread_id, lease.holder)
                return

    def _stop_renewing(self, lease: ThreadLease) -> None:
        stop = self._held.pop(lease, None)
        if stop is not None:
            stop.set()

    @property
    def held(self) -> int:
        """Claims this process holds and renews."""
        return len(self._held)

    async def release(self, lease: ThreadLease) -> None:
        self._stop_renewing(lease)
        try:
            await self._repository.release(lease)
        except Exception:  # the lease then expires on its own
            log.warning("could not release thread %s", lease.thread_id, exc_info=True)

    def release_soon(self, lease: ThreadLease) -> None:
        """Release from a place that must not wait (a cancelled stream's ``finally``): in a task of its own."""
        self._stop_renewing(lease)
        self._spawn(self.release(lease))

    def close(self) -> None:
        """Shutdown: stop every renewal (the claims then expire, unless released first)."""
        for lease in list(self._held):
            self._stop_renewing(lease)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def context(self, lease: ThreadLease) -> list[dict[str, Any]]:
        return thread_context(await self._repository.turns(lease.key))

    async def context_before(self, stored: StoredResponse) -> list[dict[str, Any]]:
        """The thread turns before ``stored`` (a thread's response continued by ``previous_response_id``)."""
        if stored.thread_key is None or stored.thread_seq is None:
            return []
        return thread_context(await self._repository.turns(stored.thread_key, stored.thread_seq))

    async def append(
        self, lease: ThreadLease, owner: Owner, input_items: list[dict[str, Any]], body: dict[str, Any]
    ) -> None:
        """Keep ``body`` as the thread's next response; a failure loses only the stored copy, never the answer."""
        try:
            await self._repository.append(lease, owner, input_items, body)
        except Exception:
            log.warning("could not append response %s to its thread", body["id"], exc_info=True)

    # -- the thread routes -----------------------------------------------------------------------------------

    async def get(self, owner: Owner, thread_id: str) -> Thread:
        thread = await self._repository.get(owner, thread_id)
        if thread is None:
            raise _missing(thread_id)
        return thread

    async def items(self, owner: Owner, thread_id: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """One page of the thread's input and output items, oldest first, and their total."""
        turns = await self._repository.turns_of(owner, thread_id)
        if turns is None:
            raise _missing(thread_id)
        items = thread_items(turns)
        return items[offset : offset + limit], len(items)

    async def owned(self, owner: Owner, offset: int, limit: int) -> tuple[list[Thread], int]:
        return await self._repository.list(
            owner.platform_id, owner.end_user_id, every_owner=False, offset=offset, limit=limit
        )

    async def of_platform(
        self, platform_id: str, end_user_id: str | None, offset: int, limit: int
    ) -> tuple[list[Thread], int]:
        return await self._repository.list(platform_id, end_user_id, every_owner=True, offset=offset, limit=limit)

    async def delete(self, owner: Owner, thread_id: str) -> None:
        outcome = await self._repository.delete(owner, thread_id)
        if outcome is Deletion.MISSING:
            raise _missing(thread_id)
        if outcome is Deletion.BUSY:
            raise _busy(thread_id)
