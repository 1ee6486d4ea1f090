"""Provider-key sealing bound to the platform (SPEC §5.3) and key generation (SPEC §2.2)."""

from __future__ import annotations

import os
import re

import pytest

from tollway.domain.keys import KeyKind, display_prefix, generate_raw_key, key_digest, kind_of
from tollway.domain.sealing import Sealer, SealError


def test_seal_round_trip_and_fresh_nonce() -> None:
    sealer = Sealer(os.urandom(32))
    a = sealer.seal("sk-provider-secret", "platform-a")
    b = sealer.seal("sk-provider-secret", "platform-a")
    assert a != b
    assert sealer.open(a, "platform-a") == "sk-provider-secret"
    assert b"sk-provider-secret" not in a


def test_ciphertext_moved_to_another_platform_fails() -> None:
    sealer = Sealer(os.urandom(32))
    sealed = sealer.seal("secret", "platform-a")
    with pytest.raises(SealError):
        sealer.open(sealed, "platform-b")


def test_other_secret_key_fails_and_fingerprints_differ() -> None:
    one, two = Sealer(os.urandom(32)), Sealer(os.urandom(32))
    with pytest.raises(SealError):
        two.open(one.seal("secret", "p"), "p")
    assert one.fingerprint != two.fingerprint
    with pytest.raises(SealError):
        one.open(b"\x02" + b"0" * 40, "p")


@pytest.mark.parametrize(
    ("kind", "prefix"), [(KeyKind.PLATFORM, "sk-plat_"), (KeyKind.END_USER, "sk-eu_"), (KeyKind.OPERATOR, "sk-admin_")]
)
def test_key_format(kind: KeyKind, prefix: str) -> None:
    raw = generate_raw_key(kind)
    assert re.fullmatch(re.escape(prefix) + r"[A-Za-z0-9_-]{43}", raw)
    assert kind_of(raw) is kind
    assert len(key_digest(raw)) == 32
    assert display_prefix(raw) == raw[:12]
    assert generate_raw_key(kind) != raw
