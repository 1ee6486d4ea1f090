"""Every console page and action (SPEC §17.1), in one table. Pages shared by several kinds of key (``/console``,
``/console/keys``, ``/console/models``) show each kind its own view; everything else is for one kind only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.domain.keys import KeyKind
from tollway.errors import NotFound
from tollway.http.console import (
    end_user,
    end_users,
    funds,
    logs,
    mcp,
    operator,
    overview,
    platform,
    signin,
    static,
    webhooks,
)
from tollway.http.console.session import page
from tollway.services.console.sessions import ActiveSession

View = Callable[[Request, ActiveSession], Awaitable[Response]]


def _by_kind(views: dict[KeyKind, View]) -> Callable[[Request], Awaitable[Response]]:
    @page(*views)
    async def endpoint(request: Request, session: ActiveSession) -> Response:
        return await views[session.principal.kind](request, session)

    return endpoint


home: Final = _by_kind(
    {
        KeyKind.OPERATOR: operator.platforms_page,
        KeyKind.PLATFORM: overview.overview_page,
        KeyKind.END_USER: end_user.budget_view,
    }
)
keys: Final = _by_kind({KeyKind.PLATFORM: platform.platform_keys_page, KeyKind.END_USER: end_user.keys_view})
models: Final = _by_kind({KeyKind.OPERATOR: operator.models_view, KeyKind.PLATFORM: platform.models_view})


@page()
async def not_found(_request: Request, _session: ActiveSession) -> Response:
    raise NotFound("No console page at this address.")


_EU = "/console/end-users/{id}"
_HOOK = "/console/webhooks/{id}"

routes: list[BaseRoute] = [
    Route("/console", home, methods=["GET"]),
    Route("/console/sign-in", signin.sign_in_page, methods=["GET"]),
    Route("/console/sign-in", signin.sign_in, methods=["POST"]),
    Route("/console/sign-out", signin.sign_out, methods=["POST"]),
    Route("/console/static/{path:path}", static.serve, methods=["GET"]),
    # operator
    Route("/console/platforms", operator.create_platform, methods=["POST"]),
    Route("/console/platforms/{pid}", operator.platform_page, methods=["GET"]),
    Route("/console/platforms/{pid}/topup", operator.topup_wallet, methods=["POST"]),
    Route("/console/platforms/{pid}/api-keys", operator.create_platform_key, methods=["POST"]),
    Route("/console/providers", operator.providers_page, methods=["GET"]),
    Route("/console/providers", operator.create_provider, methods=["POST"]),
    Route("/console/providers/{id}", operator.update_provider, methods=["POST"]),
    Route("/console/models", models, methods=["GET"]),
    Route("/console/models", operator.create_model, methods=["POST"]),
    Route("/console/models/{id}", operator.model_page, methods=["GET"]),
    Route("/console/models/{id}", operator.update_model, methods=["POST"]),
    Route("/console/reconcile", operator.reconcile_page, methods=["GET"]),
    # platform
    Route("/console/wallet", platform.wallet_page, methods=["GET"]),
    Route("/console/keys", keys, methods=["GET"]),
    Route("/console/keys", platform.create_platform_key, methods=["POST"]),
    Route("/console/keys/{kid}/revoke", platform.revoke_key, methods=["POST"]),
    Route("/console/llm-configs", platform.llm_configs_page, methods=["GET"]),
    Route("/console/llm-configs", platform.create_llm_config, methods=["POST"]),
    Route("/console/llm-configs/{id}", platform.update_llm_config, methods=["POST"]),
    Route("/console/llm-configs/{id}/delete", platform.delete_llm_config, methods=["POST"]),
    Route("/console/logs", logs.logs_page, methods=["GET"]),
    Route("/console/logs.csv", logs.logs_csv, methods=["GET"]),
    Route("/console/end-users", end_users.end_users_page, methods=["GET"]),
    Route("/console/end-users", end_users.create_end_user, methods=["POST"]),
    Route(_EU, end_users.end_user_page, methods=["GET"]),
    Route(f"{_EU}/budget", end_users.save_budget, methods=["POST"]),
    Route(f"{_EU}/budget/suspension", end_users.set_suspension, methods=["POST"]),
    Route(f"{_EU}/budget/topup", end_users.topup_budget, methods=["POST"]),
    Route(f"{_EU}/rate-limits", end_users.put_rate_limits, methods=["POST"]),
    Route(f"{_EU}/rate-limits/delete", end_users.delete_rate_limits, methods=["POST"]),
    Route(f"{_EU}/active", end_users.set_active, methods=["POST"]),
    Route(f"{_EU}/keys", end_users.create_key, methods=["POST"]),
    Route(f"{_EU}/delete", end_users.delete_end_user, methods=["POST"]),
    Route("/console/webhooks", webhooks.webhooks_page, methods=["GET"]),
    Route("/console/webhooks", webhooks.create_endpoint, methods=["POST"]),
    Route(_HOOK, webhooks.endpoint_page, methods=["GET"]),
    Route(_HOOK, webhooks.update_endpoint, methods=["POST"]),
    Route(f"{_HOOK}/rotate-secret", webhooks.rotate_secret, methods=["POST"]),
    Route(f"{_HOOK}/deliveries/{{delivery_id}}/replay", webhooks.replay_delivery, methods=["POST"]),
    Route(f"{_HOOK}/delete", webhooks.delete_endpoint, methods=["POST"]),
    Route("/console/mcp-apps", mcp.apps_page, methods=["GET"]),
    Route("/console/mcp-apps", mcp.create_app, methods=["POST"]),
    Route("/console/mcp-apps/{id}", mcp.update_app, methods=["POST"]),
    Route("/console/mcp-apps/{id}/delete", mcp.delete_app, methods=["POST"]),
    Route("/console/add-funds", funds.add_funds_page, methods=["GET"]),
    Route("/console/add-funds", funds.start_checkout, methods=["POST"]),
    # end user
    Route("/console/usage", logs.usage_page, methods=["GET"]),
    Route("/console/usage.csv", logs.usage_csv, methods=["GET"]),
    Route("/console/mcp", mcp.connections_page, methods=["GET"]),
    Route(mcp.RETURNED_PATH, mcp.returned, methods=["GET"]),
    Route("/console/mcp/{slug}/connect", mcp.connect, methods=["POST"]),
    Route("/console/mcp/{slug}/disconnect", mcp.disconnect, methods=["POST"]),
    # anything else under /console: a 404 page (signed in) or the sign-in page
    Route("/console/{rest:path}", not_found, methods=["GET", "POST"]),
]
