"""The rate-limit ports (SPEC §10): the window backends (in process, Redis) and where per-end-user limits come from."""

from __future__ import annotations

from typing import Protocol

from tollway.domain.platform_settings import RateLimits
from tollway.domain.ratelimit import Decision, Reservation, TokenDemand


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

    async def ping(self) -> None: ...


class LimitSource(Protocol):
    async def limits_of(self, platform_id: str, end_user_id: str) -> tuple[RateLimits | None, RateLimits]:
        """The end user's override (None without one) and the platform's defaults; raises ``ServiceUnavailable``
        when the database cannot be reached."""
        ...
