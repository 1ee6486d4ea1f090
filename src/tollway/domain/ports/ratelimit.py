"""The rate-limit ports (SPEC §10): the window backends (in process, Redis) and where per-end-user limits come from."""

from __future__ import annotations

from typing import Protocol

from tollway.domain.platform_settings import RateLimits
from tollway.domain.ratelimit import Decision, Reservation, TokenDemand, WriteBack


class RateLimitBackend(Protocol):
    """One end user's windows, checked and counted atomically (``key`` is the end-user id)."""

    origin: str

    async def admit(self, key: str, limits: RateLimits, demand: TokenDemand) -> Decision: ...

    def adjust(self, reservation: Reservation, tokens: int) -> None:
        """Set an admission's tokens (fire and forget; never raises)."""

    async def drain(self) -> None:
        """Wait for queued corrections."""

    async def close(self) -> None: ...


class SharedBackend(RateLimitBackend, Protocol):
    """A backend shared by instances, which may become unreachable (raises ``RateLimitBackendDown``)."""

    async def ping(self) -> bool:
        """Whether it answers (else raises); True when it lost its windows (a restart, a flush) since the last
        ping that said so: then everything this instance admitted in the current windows must be written back."""
        ...

    async def restore(self, write_back: WriteBack) -> None:
        """Adds admissions to the windows, atomically per end user, at their original times on the shared clock;
        an admission it holds already is not counted twice. Raises ``RateLimitBackendDown``."""


class AdmissionLedger(RateLimitBackend, Protocol):
    """The local backend of the failover: its windows hold every admission of this instance, those the shared
    backend decided too (``record``), so while the shared backend is away the local share is charged with them."""

    def record(self, key: str, limits: RateLimits, entry_id: str, tokens: int) -> None:
        """Counts an admission the shared backend made under ``limits`` (under its id, for ``adjust``), now."""

    def relabel(self, entry_id: str, shared_id: str, tokens: int) -> None:
        """A local admission the shared backend also admitted: it now goes by the shared id and holds ``tokens``."""

    def forget(self, entry_id: str) -> None:
        """Removes an admission the shared backend refused after all."""

    def unshared(self, everything: bool) -> WriteBack:
        """The admissions the shared backend does not hold (``everything``: all of the current windows)."""
        ...

    def mark_shared(self, write_back: WriteBack) -> None:
        """The shared backend now holds what ``write_back`` carried."""


class LimitSource(Protocol):
    async def limits_of(self, platform_id: str, end_user_id: str) -> tuple[RateLimits | None, RateLimits]:
        """The end user's override (None without one) and the platform's defaults; raises ``ServiceUnavailable``
        when the database cannot be reached."""
        ...

    async def limits_of_many(self, end_users: list[tuple[str, str]]) -> dict[str, tuple[RateLimits | None, RateLimits]]:
        """``limits_of`` of several (platform id, end-user id) pairs in one round trip, by end-user id."""
        ...
