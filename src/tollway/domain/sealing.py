"""AES-256-GCM sealing of platform provider keys, bound to the owning platform (SPEC §5.3).

Layout of a sealed value: version byte 0x01, 12-byte random nonce, ciphertext with the GCM tag.
The associated data ``tollway/llm-config/v1/<platform_id>`` makes a ciphertext moved to another platform fail.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"


class SealError(Exception):
    """A sealed value could not be opened (wrong key, wrong platform, or tampered)."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secret key must be 32 bytes")
        self._aead = AESGCM(key)
        self.fingerprint = hashlib.sha256(b"tollway/secret-key-fingerprint/v1" + key).hexdigest()

    @staticmethod
    def _aad(platform_id: str) -> bytes:
        return f"tollway/llm-config/v1/{platform_id}".encode()

    def seal(self, plaintext: str, platform_id: str) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), self._aad(platform_id))

    def open(self, sealed: bytes, platform_id: str) -> str:
        if len(sealed) < 1 + 12 + 16 or sealed[:1] != _VERSION:
            raise SealError("unknown sealed value format")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], self._aad(platform_id)).decode("utf-8")
        except InvalidTag as exc:
            raise SealError("sealed value does not open for this platform") from exc
