"""Start-up bootstrap (SPEC §2.4, §13.2): the operator key and the secret key, checked against the database."""

from __future__ import annotations

import base64
import hmac
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from tollway.domain.keys import KeyKind, generate_raw_key, key_digest
from tollway.domain.ports.inference import SystemRecords
from tollway.domain.sealing import Sealer
from tollway.settings import Settings, SettingsError, decode_secret_key

log = logging.getLogger("tollway.bootstrap")

ADMIN_DIGEST_META = "admin_key_digest"
SECRET_FINGERPRINT_META = "secret_key_fingerprint"


async def ensure_operator_key(settings: Settings, keys: SystemRecords) -> None:
    """With TOLLWAY_ADMIN_KEY unset and none stored, generate one and print it once to stderr."""
    if settings.admin_key is not None:
        return
    if await keys.get_meta(ADMIN_DIGEST_META) is not None:
        return
    raw = generate_raw_key(KeyKind.OPERATOR)
    stored = await keys.insert_meta_if_absent(ADMIN_DIGEST_META, key_digest(raw).hex())
    if stored == key_digest(raw).hex():
        print(f"Tollway operator key (shown once): {raw}", file=sys.stderr, flush=True)


async def rotate_operator_key(settings: Settings, keys: SystemRecords) -> str:
    if settings.admin_key is not None:
        raise SettingsError("TOLLWAY_ADMIN_KEY is set: unset it before rotating the operator key")
    raw = generate_raw_key(KeyKind.OPERATOR)
    await keys.set_meta(ADMIN_DIGEST_META, key_digest(raw).hex())
    return raw


def operator_digest_source(settings: Settings, keys: SystemRecords) -> Callable[[], Awaitable[bytes | None]]:
    """The callable the Authenticator polls (at most once a second) for the current operator digest."""
    fixed = key_digest(settings.admin_key) if settings.admin_key is not None else None

    async def current() -> bytes | None:
        if fixed is not None:
            return fixed
        stored = await keys.get_meta(ADMIN_DIGEST_META)
        return bytes.fromhex(stored) if stored else None

    return current


async def load_sealer(settings: Settings, keys: SystemRecords) -> Sealer:
    """The secret key from the setting, else from DATA_DIR/secret.key, generated only while the database holds
    no fingerprint. A key that does not match the stored fingerprint refuses start-up."""
    stored = await keys.get_meta(SECRET_FINGERPRINT_META)
    if settings.secret_key is not None:
        key = decode_secret_key(settings.secret_key)
    else:
        path = Path(settings.data_dir) / "secret.key"
        if path.exists():
            key = decode_secret_key(path.read_text().strip())
        elif stored is None:
            key = os.urandom(32)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(base64.b64encode(key).decode("ascii") + "\n")
            log.warning("generated a new secret key at %s; losing it makes stored provider keys unrecoverable", path)
        else:
            raise SettingsError(
                "TOLLWAY_SECRET_KEY: unset, and the database holds a secret-key fingerprint; set the key it was "
                "created with"
            )
    sealer = Sealer(key)
    if stored is None:
        stored = await keys.insert_meta_if_absent(SECRET_FINGERPRINT_META, sealer.fingerprint)
    if not hmac.compare_digest(stored, sealer.fingerprint):
        raise SettingsError("TOLLWAY_SECRET_KEY does not match the fingerprint stored in the database")
    return sealer
