"""Every route of the HTTP API in one table, so a new engineer finds where a path is served."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from tollway.http import health
from tollway.http.inference import chat, embeddings, images, messages, models, responses, threads

# Served by ``http/fastpath.py`` ahead of Starlette's router (the same handlers; they stay listed below).
HOT_PATHS = (
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/responses",
    "/v1/images/generations",
    "/v1/image/generate",
    "/v1/embeddings",
    "/v1/moderations",
)
# Matched by their prefix ahead of the router (``http/fastpath.py``): the MCP proxy (SPEC §16.3).
HOT_PREFIXED_PATHS = ("/v1/mcp/{slug}",)


def build_routes(*, console: bool = True) -> list[BaseRoute]:
    """``console``: the browser console under /console (SPEC §17.1; ``TOLLWAY_CONSOLE=0`` leaves it out)."""
    from tollway.http import me, me_mcp, me_rate_limits
    from tollway.http.console.routes import routes as console_routes
    from tollway.http.management import (
        admin,
        card_topups,
        end_users,
        mcp_apps,
        platform,
        rate_limits,
        reconcile,
        webhooks,
    )
    from tollway.http.mcp import oauth, proxy
    from tollway.http.openapi import routes as openapi

    return [
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        Route("/v1/models", models.list_models, methods=["GET"]),
        Route("/v1/models/{slug:path}", models.get_model, methods=["GET"]),
        Route("/v1/chat/completions", chat.chat_completions, methods=["POST"]),
        Route("/v1/messages", messages.create_message, methods=["POST"]),
        Route("/v1/responses", responses.create_response, methods=["POST"]),
        Route("/v1/responses/{response_id}", responses.get_response, methods=["GET"]),
        Route("/v1/responses/{response_id}", responses.delete_response, methods=["DELETE"]),
        Route("/v1/images/generations", images.generate_images, methods=["POST"]),
        Route("/v1/image/generate", images.generate_image_asi1, methods=["POST"]),
        Route("/v1/embeddings", embeddings.create_embeddings, methods=["POST"]),
        Route("/v1/moderations", embeddings.create_moderation, methods=["POST"]),
        *threads.routes,
        *admin.routes,
        *reconcile.routes,
        *platform.routes,
        *end_users.routes,
        *me.routes,
        *rate_limits.routes,
        *me_rate_limits.routes,
        *webhooks.routes,
        *mcp_apps.routes,
        *me_mcp.routes,
        *oauth.routes,
        *card_topups.routes,
        *proxy.routes,
        *openapi.routes,
        *(console_routes if console else []),
    ]
