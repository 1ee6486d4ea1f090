"""CORS for browsers calling Tollway directly (SPEC §13.1 ``TOLLWAY_CORS_ORIGINS``): only the inference API and
``/v1/me/*`` answer with CORS headers; management and operator routes never do, so a browser page cannot drive them
even when it holds a key."""

from __future__ import annotations

from typing import Final

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

_BROWSER_PREFIXES: Final = (
    "/v1/chat/",
    "/v1/responses",
    "/v1/threads",
    "/v1/images/",
    "/v1/image/",
    "/v1/models",
    "/v1/me/",
)


class InferenceCORS:
    """Starlette's CORSMiddleware, applied to the routes SPEC allows and bypassed everywhere else."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self._plain = app
        self._cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["authorization", "content-type", "x-session-id", "idempotency-key"],
            expose_headers=[
                "x-request-id",
                "retry-after",
                "x-tollway-max-tokens-clamped",
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(_BROWSER_PREFIXES):
            await self._cors(scope, receive, send)
        else:
            await self._plain(scope, receive, send)
