"""Who is calling: the authenticated principal and the platform settings that govern it (SPEC §2, §5.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tollway.domain.keys import KeyKind


@dataclass(frozen=True, slots=True)
class Principal:
    kind: KeyKind
    key_id: str | None
    platform_id: str | None = None
    end_user_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    end_user_active: bool = True

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An active API key as stored (the digest is not carried around)."""

    id: str
    type: str
    platform_id: str
    end_user_id: str | None
    scopes: tuple[str, ...]
    expires_at: datetime | None
    last_used_at: datetime | None
    end_user_active: bool = True  # the owning end user's is_active (True for platform keys)
