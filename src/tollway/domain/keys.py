"""API keys: generation, digests and the kinds of SPEC §2. Raw keys are never stored, only SHA-256 digests."""

from __future__ import annotations

import base64
import hashlib
import secrets
from enum import StrEnum


class KeyKind(StrEnum):
    OPERATOR = "operator"
    PLATFORM = "platform"
    END_USER = "end_user"


PREFIXES: dict[KeyKind, str] = {
    KeyKind.OPERATOR: "sk-admin_",
    KeyKind.PLATFORM: "sk-plat_",
    KeyKind.END_USER: "sk-eu_",
}

PLATFORM_SCOPES = frozenset({"inference", "manage"})
END_USER_SCOPES = frozenset({"inference"})
KEY_PREFIX_CHARS = 12


def generate_raw_key(kind: KeyKind) -> str:
    """Prefix + unpadded base64url of 32 CSPRNG bytes (43 characters)."""
    return PREFIXES[kind] + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def key_digest(raw_key: str) -> bytes:
    return hashlib.sha256(raw_key.encode("utf-8", "surrogatepass")).digest()


def display_prefix(raw_key: str) -> str:
    return raw_key[:KEY_PREFIX_CHARS]


def kind_of(raw_key: str) -> KeyKind | None:
    for kind, prefix in PREFIXES.items():
        if raw_key.startswith(prefix):
            return kind
    return None
