"""API keys (SPEC §2.2): the secret ``raw_key`` exists only on the answer that created it."""

from __future__ import annotations

from pydantic import AwareDatetime

from tollway_sdk._models import TollwayModel


class APIKey(TollwayModel):
    id: str
    platform_id: str
    end_user_id: str | None = None
    type: str  # platform or end_user
    name: str | None = None
    key_prefix: str
    scopes: list[str]
    is_active: bool
    expires_at: AwareDatetime | None = None
    last_used_at: AwareDatetime | None = None
    revoked_at: AwareDatetime | None = None
    created_at: AwareDatetime


class CreatedAPIKey(APIKey):
    raw_key: str
