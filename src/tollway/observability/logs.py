"""Structured logs (SPEC §13.4, §15): one JSON object per line with ``ts, level, logger, message`` and, inside a
request, ``request_id``, ``platform_id`` and ``end_user_id``; exceptions go in an ``exception`` field. A scrubber
removes anything shaped like a key, and the configured operator and secret keys, from every line: the last line of
defence behind code that never logs secrets in the first place."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from tollway.observability.context import current_request
from tollway.settings import Settings

REDACTED = "[REDACTED]"

# sk-… (our keys and OpenAI/Anthropic style), whsec_…, Google API keys, any bearer credential, and Stripe's secret
# and restricted keys (sk_live_…, rk_test_…).
_KEY_SHAPES = re.compile(
    r"sk-[A-Za-z0-9_\-]{6,}|whsec_[A-Za-z0-9+/=_\-]{6,}|AIza[0-9A-Za-z_\-]{10,}|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{6,}"
    r"|\b[sr]k_(?:live|test)_[A-Za-z0-9]{6,}"
)


class Scrubber:
    """Replaces key-shaped substrings and the given literal secrets with ``[REDACTED]``."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        literals = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)
        self._literals = re.compile("|".join(re.escape(s) for s in literals)) if literals else None

    def __call__(self, text: str) -> str:
        if self._literals is not None:
            text = self._literals.sub(REDACTED, text)
        return _KEY_SHAPES.sub(REDACTED, text)


_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__()
        self._scrub = scrubber

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._scrub(record.getMessage()),
        }
        context = current_request()
        if context is not None:
            entry["request_id"] = context.request_id
            if context.platform_id is not None:
                entry["platform_id"] = context.platform_id
            if context.end_user_id is not None:
                entry["end_user_id"] = context.end_user_id
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRS and name not in entry and not name.startswith("_"):
                entry[name] = self._scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = self._scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self._scrub(record.exc_text)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(settings: Settings) -> None:
    """Root logger -> stderr as JSON at ``settings.log_level``; uvicorn's loggers propagate to it (its access log is
    off). Called by the CLI in every serving process."""
    handler = logging.StreamHandler(sys.stderr)
    secrets = [settings.admin_key, settings.secret_key, settings.stripe_secret_key, settings.stripe_webhook_secret]
    handler.setFormatter(JsonFormatter(Scrubber(secrets)))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = name != "uvicorn.access"
        logger.setLevel(settings.log_level.upper())
