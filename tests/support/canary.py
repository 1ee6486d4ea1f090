"""Canary secrets for the whole suite (SPEC §15): the gateways tests start get recognisable operator and secret keys,
every raw key and webhook secret a test is shown is remembered, and at the end of the session no canary, no
remembered key and no raw key prefix may have appeared in a captured log record, an error body, a ``/metrics``
scrape or a webhook payload a test received. Cheap: one regex search per log record and per error or metrics body.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.seed import FAKE_PROVIDER_KEY

ADMIN_PREFIX = "sk-admin_CANARY"
# Our key shapes (and key prefixes, their first 12 characters), webhook secrets, and the provider key of the seeds.
_CANDIDATES = re.compile(r"sk-(?:admin|plat|eu)_[A-Za-z0-9_\-]{3,}|whsec_[A-Za-z0-9+/=_\-]{8,}|sk-fakeprovider-\w+")


_CONSOLE_SECRET = re.compile(r'<code class="secret" id="secret-value">([^<]+)</code>')


class CanaryWatch:
    def __init__(self) -> None:
        self.secrets: set[str] = {FAKE_PROVIDER_KEY}
        self.prefixes: set[str] = set()
        self.violations: list[str] = []

    def admin_key(self) -> str:
        key = ADMIN_PREFIX + secrets.token_urlsafe(32)
        self.remember(key)
        return key

    def secret_key(self) -> str:
        key = base64.b64encode(os.urandom(32)).decode()
        self.secrets.add(key)
        return key

    def remember(self, raw: str) -> None:
        self.secrets.add(raw)
        if raw.startswith("sk-"):
            self.prefixes.add(raw[:12])

    def leaked(self, text: str, *, prefixes: bool = True) -> str | None:
        """The first secret, raw key or (with ``prefixes``) key prefix found in ``text``, else None."""
        for match in _CANDIDATES.finditer(text):
            token = match.group(0)
            if token.startswith(ADMIN_PREFIX) or token in self.secrets or (prefixes and token[:12] in self.prefixes):
                return token
        for secret in self.secrets:
            if not secret.startswith(("sk-", "whsec_")) and secret in text:
                return secret
        return None

    def check(self, where: str, text: str, *, prefixes: bool = True) -> None:
        found = self.leaked(text, prefixes=prefixes)
        if found is not None:
            self.violations.append(f"{where}: {found[:16]}… in {text[:300]!r}")

    def harvest(self, body: Any) -> None:
        """Remember raw keys and webhook secrets from the one response that shows them."""
        if isinstance(body, dict):
            for name, value in body.items():
                if name in ("raw_key", "secret") and isinstance(value, str):
                    self.remember(value)
                else:
                    self.harvest(value)
        elif isinstance(body, list):
            for item in body:
                self.harvest(item)

    def observe(self, response: httpx.Response) -> None:
        content = response.content
        try:
            method, path = response.request.method, response.request.url.path
        except RuntimeError:  # a Response a test built itself
            method, path = "-", "-"
        if response.status_code >= 400 or path == "/metrics":
            # A console page shown with an error (a form sent back with its §3 message) still lists the user's keys
            # by prefix, as the same page does without one: there only whole secrets count.
            page = path.startswith("/console") and response.headers.get("content-type", "").startswith("text/html")
            self.check(
                f"{method} {path} -> {response.status_code}", content.decode(errors="replace"), prefixes=not page
            )
        elif b'"raw_key"' in content or b'"secret"' in content:
            with contextlib.suppress(ValueError):
                self.harvest(response.json())
        elif b'id="secret-value"' in content:  # a console page showing a new key or secret, once
            for shown in _CONSOLE_SECRET.findall(content.decode(errors="replace")):
                self.remember(shown)


class _LogWatch(logging.Handler):
    def __init__(self, watch: CanaryWatch) -> None:
        super().__init__(logging.DEBUG)
        self._watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is not our concern here
            return
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + repr(record.exc_info[1])
        self._watch.check(f"log {record.name}", text)


WATCH = CanaryWatch()  # the session's one watch: make_settings (tests/conftest.py) draws its keys from it


def webhook_payload_seen(body: bytes) -> None:
    """For webhook receivers in tests: every delivered payload is checked too."""
    WATCH.check("webhook payload", body.decode(errors="replace"))


def _wrap_read(original: Callable[[httpx.Response], bytes]) -> Callable[[httpx.Response], bytes]:
    """Every body a test (or the openai SDK) reads whole passes here; streamed bodies go through ``iter_bytes``."""

    def read(self: httpx.Response) -> bytes:
        content = original(self)
        try:
            WATCH.observe(self)
        except Exception as exc:  # the watch must never break a test by itself
            WATCH.violations.append(f"canary watch failed: {exc!r}")
        return content

    return read


def _wrap_iter_bytes(original: Callable[..., Iterator[bytes]]) -> Callable[..., Iterator[bytes]]:
    """Event streams (SSE read by the tests and by the openai SDK) are checked chunk by chunk."""

    def iter_bytes(self: httpx.Response, chunk_size: int | None = None) -> Iterator[bytes]:
        if not self.headers.get("content-type", "").startswith("text/event-stream"):
            yield from original(self, chunk_size)  # whole bodies: the read() check above
            return
        for chunk in original(self, chunk_size):
            WATCH.check(f"stream {self.request.url.path}", chunk.decode(errors="replace"))
            yield chunk

    return iter_bytes


@pytest.fixture(scope="session", autouse=True)
def canary_watch() -> Iterator[CanaryWatch]:
    handler = _LogWatch(WATCH)
    logging.getLogger().addHandler(handler)
    original, original_iter = httpx.Response.read, httpx.Response.iter_bytes
    httpx.Response.read = _wrap_read(original)  # type: ignore[method-assign]
    httpx.Response.iter_bytes = _wrap_iter_bytes(original_iter)  # type: ignore[method-assign]
    try:
        yield WATCH
    finally:
        httpx.Response.read = original  # type: ignore[method-assign]
        httpx.Response.iter_bytes = original_iter  # type: ignore[method-assign]
        logging.getLogger().removeHandler(handler)
    assert not WATCH.violations, "secrets leaked:\n" + "\n".join(WATCH.violations[:20])
