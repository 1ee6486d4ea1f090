"""The per-request context every log line and metric of a request reads: set once by the HTTP middleware, filled in
by authentication, read by the JSON log formatter (``request_id``, ``platform_id``, ``end_user_id``) and by the
added-latency measure (time spent waiting on upstreams)."""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollway.observability.metrics import Metrics


class RequestContext:
    __slots__ = ("drain", "end_user_id", "metrics", "platform_id", "request_id", "upstream_s")

    def __init__(self, request_id: str, metrics: Metrics | None = None, drain: Any = None) -> None:
        self.request_id = request_id
        self.platform_id: str | None = None
        self.end_user_id: str | None = None
        self.upstream_s = 0.0  # seconds spent waiting on upstream providers (services/attempts.py)
        self.metrics = metrics  # the process's metrics, for code deep in a request (services/attempts.py)
        self.drain = drain  # the process's http.drain.Drain, for streams to register with


# A ContextVar must be module-level (one per process, like logging's loggers); it holds no state of its own.
_current: ContextVar[RequestContext | None] = ContextVar("tollway_request", default=None)


def bind_request(context: RequestContext) -> Token[RequestContext | None]:
    return _current.set(context)


def unbind_request(token: Token[RequestContext | None]) -> None:
    _current.reset(token)


def current_request() -> RequestContext | None:
    return _current.get()


def bind_principal(platform_id: str | None, end_user_id: str | None) -> None:
    """Called once a key is authenticated, so later log lines of the request name its tenant."""
    context = _current.get()
    if context is not None:
        context.platform_id = platform_id
        context.end_user_id = end_user_id
