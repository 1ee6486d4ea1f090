"""The pre-flight wallet check without a database read per call (SPEC §8 step 8).

Each instance keeps, per platform, the available balance last read or committed (refreshed at least every second)
minus what its own calls have in flight: the worst-case cost of calls still running, and the cost of settled calls
whose debit the group-commit writer has not committed yet. A call is admitted only if its worst case fits.
The database stays the authority: the debit itself never takes more than the balance (§9.4).
"""

from __future__ import annotations

import time
from typing import Protocol

from tollway.errors import WalletInsufficient

REFRESH_S = 1.0


class WalletReader(Protocol):
    async def wallet_available(self, platform_id: str) -> int | None: ...


class WalletGate:
    def __init__(self, reader: WalletReader) -> None:
        self._reader = reader
        self._snapshots: dict[str, tuple[float, int | None]] = {}
        self._pending: dict[str, int] = {}

    async def _available(self, platform_id: str) -> int | None:
        snapshot = self._snapshots.get(platform_id)
        if snapshot is None or time.monotonic() - snapshot[0] >= REFRESH_S:
            value = await self._reader.wallet_available(platform_id)
            snapshot = (time.monotonic(), value)
            self._snapshots[platform_id] = snapshot
        return snapshot[1]

    async def reserve(self, platform_id: str, worst_case_nanos: int) -> None:
        available = await self._available(platform_id)
        # No await between the check and the reservation: concurrent calls of this instance cannot both pass.
        pending = self._pending.get(platform_id, 0)
        if available is None or available - pending <= 0 or available - pending < worst_case_nanos:
            raise WalletInsufficient("The platform wallet cannot cover this call; the platform must top it up.")
        self._pending[platform_id] = pending + worst_case_nanos

    def release(self, platform_id: str, reserved_nanos: int) -> None:
        self._pending[platform_id] = self._pending.get(platform_id, 0) - reserved_nanos

    def settle(self, platform_id: str, reserved_nanos: int, cost_nanos: int) -> None:
        """The call ended: its reservation becomes its actual cost until the debit commits."""
        self._pending[platform_id] = self._pending.get(platform_id, 0) - reserved_nanos + cost_nanos

    def committed(self, platform_id: str, cost_nanos: int, available_after: int | None) -> None:
        self._pending[platform_id] = self._pending.get(platform_id, 0) - cost_nanos
        if available_after is None:
            self._snapshots.pop(platform_id, None)
        else:
            self._snapshots[platform_id] = (time.monotonic(), available_after)

    def invalidate(self, platform_id: str | None = None) -> None:
        """After a topup or any other balance change made outside the settlement writer."""
        if platform_id is None:
            self._snapshots.clear()
        else:
            self._snapshots.pop(platform_id, None)
