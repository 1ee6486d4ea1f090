"""Every route of the HTTP API in one table, so a new engineer finds where a path is served."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from tollway.http import health
from tollway.http.inference import chat, models


def build_routes() -> list[BaseRoute]:
    from tollway.http import me, me_rate_limits
    from tollway.http.management import admin, end_users, platform, rate_limits

    return [
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/v1/models", models.list_models, methods=["GET"]),
        Route("/v1/models/{slug:path}", models.get_model, methods=["GET"]),
        Route("/v1/chat/completions", chat.chat_completions, methods=["POST"]),
        *admin.routes,
        *platform.routes,
        *end_users.routes,
        *me.routes,
        *rate_limits.routes,
        *me_rate_limits.routes,
    ]
