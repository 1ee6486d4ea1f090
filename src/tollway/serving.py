"""How uvicorn serves Tollway: the one set of server options that ``tollway serve``, the demo and the tests' gateway
helper share, so that what the tests exercise is what operators run."""

from __future__ import annotations

from typing import Any

from tollway.settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run`` / ``uvicorn.Config`` for ``settings`` (everything but the app)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "log_level": settings.log_level,
        "log_config": None,  # our JSON handler on the root logger (observability/logs.py)
        "access_log": False,
        # The client address comes from our middleware, which believes proxy headers only from
        # TOLLWAY_TRUSTED_PROXIES (SPEC §15); uvicorn's own handling would trust 127.0.0.1.
        "proxy_headers": False,
        "lifespan": "on",
        # Streams are ended at drain_s (http/drain.py); this bounds everything else still running.
        "timeout_graceful_shutdown": settings.drain_s + 5,
    }
