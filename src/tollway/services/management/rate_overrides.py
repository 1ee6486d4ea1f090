"""Per-end-user rate-limit overrides as a platform manages them (SPEC §5.6), and the effective limits an end user
reads at ``/v1/me/rate-limits`` (§6): an override row when there is one, else the platform's defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from tollway.domain.bodies import Body, Field, Integer
from tollway.domain.clock import utcnow
from tollway.domain.platform_settings import RateLimits
from tollway.domain.ports.management import RateOverrideRepository
from tollway.domain.ratelimit import MAX_LIMIT, EffectiveLimits, resolve_limits
from tollway.domain.records import Record
from tollway.errors import NotFound

_OVERRIDE_FIELDS: Final = ("rpm_limit", "tpm_limit", "rpd_limit")
OVERRIDE_BODY: Final = Body(
    *(
        Field(name, Integer(minimum=1, maximum=MAX_LIMIT), nullable=True, description="null: the platform default.")
        for name in _OVERRIDE_FIELDS
    ),
    read_only=("end_user_id", "updated_at", "resolution"),
    description="Replaced whole: an absent key counts as null.",
)
_NO_END_USER: Final = "No end user with this id."


def parse_override(body: Mapping[str, Any]) -> RateLimits:
    """``{rpm_limit, tpm_limit, rpd_limit}``: each a positive integer ≤ 10⁹ or null; an absent key is null."""
    OVERRIDE_BODY.check(body)
    rpm, tpm, rpd = (OVERRIDE_BODY.read(body, name) for name in _OVERRIDE_FIELDS)
    return RateLimits(rpm=rpm, tpm=tpm, rpd=rpd)


class RateLimitOverrides:
    def __init__(self, store: RateOverrideRepository) -> None:
        self._store = store

    async def require_end_user(self, platform_id: str, end_user_id: str) -> None:
        if not await self._store.end_user_exists(platform_id, end_user_id):
            raise NotFound(_NO_END_USER)

    async def get(self, platform_id: str, end_user_id: str) -> Record:
        row = await self._store.get(platform_id, end_user_id)
        if row is None:
            raise NotFound("This end user has no rate-limit override.")
        return row

    async def put(self, platform_id: str, end_user_id: str, body: Mapping[str, Any]) -> Record:
        row = await self._store.put(platform_id, end_user_id, parse_override(body), utcnow())
        if row is None:
            raise NotFound(_NO_END_USER)
        return row

    async def delete(self, platform_id: str, end_user_id: str) -> None:
        if not await self._store.delete(platform_id, end_user_id):
            raise NotFound(_NO_END_USER)

    async def effective(self, platform_id: str, end_user_id: str) -> EffectiveLimits:
        override, defaults = await self._store.limits_of(platform_id, end_user_id)
        return resolve_limits(override, defaults)
