"""A platform's own provider key (SPEC §5.3); the key itself is never returned, not even partly."""

from __future__ import annotations

from pydantic import AwareDatetime

from tollway_sdk._models import TollwayModel


class LLMConfig(TollwayModel):
    id: str
    platform_id: str
    provider_id: str
    provider_slug: str
    is_default: bool
    is_active: bool
    created_at: AwareDatetime
    updated_at: AwareDatetime
