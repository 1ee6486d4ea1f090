"""The platform API's operations (SPEC §5, §16.1, §16.4): ``/v1/platforms/{pid}/…`` with a platform key of scope
``manage``. Bodies are the services' own ``Body`` specs."""

from __future__ import annotations

from typing import Final

from tollway.domain.budgets import BudgetTxnType
from tollway.errors import BudgetExhausted, IdempotencyInProgress, IdempotencyKeyMismatch, InvalidRequest, UpstreamError
from tollway.http.openapi.operations import (
    IDEMPOTENCY_KEY,
    PAGING,
    PID,
    TIME_RANGE,
    Access,
    Link,
    Operation,
    choice,
    filter_id,
    path_id,
    query,
)
from tollway.http.openapi.schemas import STRING, page_of, ref
from tollway.services.management.accounts import LOG_REQUEST_TYPES, LOG_STATUSES, WALLET_TXN_TYPES
from tollway.services.management.budgets import BUDGET_BODY, BUDGET_PATCH, DEBIT_BODY, TOPUP_BODY
from tollway.services.management.card_topups import CHECKOUT_BODY
from tollway.services.management.credentials import LLM_CONFIG_BODY, LLM_CONFIG_PATCH, PLATFORM_KEY_BODY
from tollway.services.management.end_users import END_USER_BODY, END_USER_KEY_BODY, END_USER_PATCH
from tollway.services.management.mcp_apps import APP_BODY, APP_PATCH
from tollway.services.management.platforms import PLATFORM_PATCH
from tollway.services.management.rate_overrides import OVERRIDE_BODY
from tollway.services.management.webhooks import ENDPOINT_BODY, ENDPOINT_PATCH

_PL = Access.PLATFORM
_BASE: Final = "/v1/platforms/{pid}"
_USER: Final = path_id("id", "end user")
_CONFIG: Final = path_id("id", "LLM config")
_ENDPOINT: Final = path_id("id", "webhook endpoint")
_APP: Final = path_id("app_id", "MCP app")
_IDEMPOTENT: Final = (IdempotencyKeyMismatch, IdempotencyInProgress)
_PLATFORM_SCOPED: Final = {"pid": "$request.path.pid"}


def _links(resource: str, id_param: str = "id", at: str = "$response.body#/id") -> tuple[Link, ...]:
    """create -> get, update, delete of the new object, on the same platform."""
    where = {**_PLATFORM_SCOPED, id_param: at}
    return (
        Link(f"Get{resource}", f"get{resource}", where),
        Link(f"Update{resource}", f"update{resource}", where),
        Link(f"Delete{resource}", f"delete{resource}", where),
    )


_USER_LINKS: Final = (
    *_links("EndUser"),
    Link("CreateBudget", "createBudget", {**_PLATFORM_SCOPED, "id": "$response.body#/id"}),
    Link("PutRateLimits", "putRateLimits", {**_PLATFORM_SCOPED, "id": "$response.body#/id"}),
)

OPERATIONS: Final = {
    # -- the platform (§5.1) ------------------------------------------------------------------------------------
    ("GET", _BASE): Operation("getPlatform", "Get the platform", "Platform", _PL, ref("Platform"), params=(PID,)),
    ("PATCH", _BASE): Operation(
        "updatePlatform", "Update name or settings", "Platform", _PL, ref("Platform"), body=PLATFORM_PATCH,
        params=(PID,),
    ),
    ("DELETE", _BASE): Operation(
        "deletePlatform", "Delete the platform", "Platform", _PL, None, 204, params=(PID,),
        description="Its keys stop working; ledgers and logs are retained but unreachable.",
    ),
    # -- API keys (§5.2) ----------------------------------------------------------------------------------------
    ("GET", f"{_BASE}/api-keys"): Operation(
        "listKeys", "List API keys", "Platform: keys", _PL, page_of(ref("ApiKey")),
        params=(PID, *PAGING, choice("type", "platform", "end_user"), filter_id("end_user_id", "keys of the end user")),
    ),
    ("POST", f"{_BASE}/api-keys"): Operation(
        "createKey", "Issue a platform key", "Platform: keys", _PL, ref("ApiKeyWithSecret"), 201,
        body=PLATFORM_KEY_BODY, body_required=False, params=(PID,),
        links=(Link("RevokeKey", "revokeKey", {**_PLATFORM_SCOPED, "kid": "$response.body#/id"}),),
    ),
    ("DELETE", f"{_BASE}/api-keys/{{kid}}"): Operation(
        "revokeKey", "Revoke a key", "Platform: keys", _PL, None, 204, params=(PID, path_id("kid", "API key")),
    ),
    # -- LLM configs (§5.3) -------------------------------------------------------------------------------------
    ("GET", f"{_BASE}/llm-configs"): Operation(
        "listConfigs", "List LLM configs", "Platform: LLM configs", _PL, page_of(ref("LlmConfig")),
        params=(PID, *PAGING, filter_id("provider_id", "configs of the provider")),
    ),
    ("POST", f"{_BASE}/llm-configs"): Operation(
        "createConfig", "Add a provider key", "Platform: LLM configs", _PL, ref("LlmConfig"), 201,
        body=LLM_CONFIG_BODY, params=(PID,), links=_links("Config"),
    ),
    ("GET", f"{_BASE}/llm-configs/{{id}}"): Operation(
        "getConfig", "Get an LLM config", "Platform: LLM configs", _PL, ref("LlmConfig"), params=(PID, _CONFIG)
    ),
    ("PATCH", f"{_BASE}/llm-configs/{{id}}"): Operation(
        "updateConfig", "Update an LLM config", "Platform: LLM configs", _PL, ref("LlmConfig"),
        body=LLM_CONFIG_PATCH, params=(PID, _CONFIG),
    ),
    ("DELETE", f"{_BASE}/llm-configs/{{id}}"): Operation(
        "deleteConfig", "Delete an LLM config", "Platform: LLM configs", _PL, None, 204, params=(PID, _CONFIG)
    ),
    # -- wallet and logs (§5.7) ---------------------------------------------------------------------------------
    ("GET", f"{_BASE}/wallet"): Operation(
        "getWallet", "The wallet and its newest rows", "Platform: wallet", _PL, ref("WalletWithRecent"), params=(PID,)
    ),
    ("GET", f"{_BASE}/wallet/transactions"): Operation(
        "listWalletTransactions", "The wallet's ledger", "Platform: wallet", _PL, page_of(ref("WalletTransaction")),
        params=(PID, *PAGING, choice("type", *WALLET_TXN_TYPES), *TIME_RANGE),
    ),
    ("POST", f"{_BASE}/wallet/checkout"): Operation(
        "createCheckout", "Add funds by card (Stripe Checkout)", "Platform: wallet", _PL, ref("CheckoutSession"), 201,
        body=CHECKOUT_BODY, params=(PID, IDEMPOTENCY_KEY), errors=(UpstreamError, *_IDEMPOTENT),
        description="404 not_found when card top-ups are not configured; the wallet is credited once Stripe says "
        "the session was paid (SPEC §17.2).",
    ),
    ("GET", f"{_BASE}/logs"): Operation(
        "listLogs", "Usage logs", "Platform: wallet", _PL, page_of(ref("UsageLog")),
        params=(
            PID, *PAGING, query("model", STRING), filter_id("end_user_id", "rows of the end user"),
            choice("status", *LOG_STATUSES), choice("request_type", *LOG_REQUEST_TYPES), *TIME_RANGE,
        ),
    ),
    # -- end users (§5.4) ---------------------------------------------------------------------------------------
    ("POST", f"{_BASE}/end-users"): Operation(
        "createEndUser", "Create an end user (idempotent by external_id)", "Platform: end users", _PL,
        ref("CreatedEndUser"), 201, body=END_USER_BODY, params=(PID,),
        also_ok={200: "The external_id exists: the existing end user, a fresh key, and its budget."},
        links=_USER_LINKS,
    ),
    ("GET", f"{_BASE}/end-users"): Operation(
        "listEndUsers", "List end users", "Platform: end users", _PL, page_of(ref("EndUser")),
        params=(PID, *PAGING, query("external_id", STRING, "Exact match.")),
    ),
    ("GET", f"{_BASE}/end-users/{{id}}"): Operation(
        "getEndUser", "Get an end user", "Platform: end users", _PL, ref("EndUser"), params=(PID, _USER)
    ),
    ("PATCH", f"{_BASE}/end-users/{{id}}"): Operation(
        "updateEndUser", "Update an end user", "Platform: end users", _PL, ref("EndUser"), body=END_USER_PATCH,
        params=(PID, _USER),
    ),
    ("DELETE", f"{_BASE}/end-users/{{id}}"): Operation(
        "deleteEndUser", "Delete an end user", "Platform: end users", _PL, None, 204, params=(PID, _USER),
        description="Keys revoked, budget deactivated, external_id free again; ledger and logs retained.",
    ),
    ("POST", f"{_BASE}/end-users/{{id}}/api-keys"): Operation(
        "createEndUserKey", "Issue an end-user key", "Platform: end users", _PL, ref("ApiKeyWithSecret"), 201,
        body=END_USER_KEY_BODY, body_required=False, params=(PID, _USER),
    ),
    # -- budgets (§5.5) -----------------------------------------------------------------------------------------
    ("POST", f"{_BASE}/end-users/{{id}}/budget"): Operation(
        "createBudget", "Create the end user's budget", "Platform: budgets", _PL, ref("Budget"), 201,
        body=BUDGET_BODY, params=(PID, _USER),
        links=(
            Link("GetBudget", "getBudget", {**_PLATFORM_SCOPED, "id": "$request.path.id"}),
            Link("TopUpBudget", "topUpBudget", {**_PLATFORM_SCOPED, "id": "$request.path.id"}),
        ),
    ),
    ("GET", f"{_BASE}/end-users/{{id}}/budget"): Operation(
        "getBudget", "Get the budget", "Platform: budgets", _PL, ref("Budget"), params=(PID, _USER)
    ),
    ("PATCH", f"{_BASE}/end-users/{{id}}/budget"): Operation(
        "updateBudget", "Update the budget", "Platform: budgets", _PL, ref("Budget"), body=BUDGET_PATCH,
        params=(PID, _USER, IDEMPOTENCY_KEY), errors=_IDEMPOTENT,
    ),
    ("POST", f"{_BASE}/end-users/{{id}}/budget/topup"): Operation(
        "topUpBudget", "Add to max_usd", "Platform: budgets", _PL, ref("BudgetChange"), body=TOPUP_BODY,
        params=(PID, _USER, IDEMPOTENCY_KEY), errors=_IDEMPOTENT,
    ),
    ("POST", f"{_BASE}/end-users/{{id}}/budget/debit"): Operation(
        "debitBudget", "Add to used_usd (chargebacks, corrections)", "Platform: budgets", _PL, ref("BudgetChange"),
        body=DEBIT_BODY, params=(PID, _USER, IDEMPOTENCY_KEY), errors=(BudgetExhausted, *_IDEMPOTENT),
    ),
    ("GET", f"{_BASE}/end-users/{{id}}/budget/transactions"): Operation(
        "listBudgetTransactions", "The budget's ledger", "Platform: budgets", _PL, page_of(ref("BudgetTransaction")),
        params=(PID, _USER, *PAGING, choice("type", *(t.value for t in BudgetTxnType)), *TIME_RANGE),
    ),
    # -- rate-limit overrides (§5.6) ----------------------------------------------------------------------------
    ("GET", f"{_BASE}/end-users/{{id}}/rate-limits"): Operation(
        "getRateLimits", "Get the end user's override", "Platform: rate limits", _PL, ref("RateLimitOverride"),
        params=(PID, _USER),
    ),
    ("PUT", f"{_BASE}/end-users/{{id}}/rate-limits"): Operation(
        "putRateLimits", "Set the end user's override", "Platform: rate limits", _PL, ref("RateLimitOverride"),
        body=OVERRIDE_BODY, params=(PID, _USER),
        links=(
            Link("GetRateLimits", "getRateLimits", {**_PLATFORM_SCOPED, "id": "$request.path.id"}),
            Link("DeleteRateLimits", "deleteRateLimits", {**_PLATFORM_SCOPED, "id": "$request.path.id"}),
        ),
    ),
    ("DELETE", f"{_BASE}/end-users/{{id}}/rate-limits"): Operation(
        "deleteRateLimits", "Remove the override", "Platform: rate limits", _PL, None, 204, params=(PID, _USER)
    ),
    # -- webhooks (§5.8) ----------------------------------------------------------------------------------------
    ("GET", f"{_BASE}/webhooks"): Operation(
        "listEndpoints", "List webhook endpoints", "Platform: webhooks", _PL, page_of(ref("WebhookEndpoint")),
        params=(PID, *PAGING),
    ),
    ("POST", f"{_BASE}/webhooks"): Operation(
        "createEndpoint", "Add a webhook endpoint", "Platform: webhooks", _PL, ref("WebhookEndpointWithSecret"),
        201, body=ENDPOINT_BODY, params=(PID,),
        links=(
            *_links("Endpoint"),
            Link("RotateSecret", "rotateSecret", {**_PLATFORM_SCOPED, "id": "$response.body#/id"}),
            Link("ListDeliveries", "listDeliveries", {**_PLATFORM_SCOPED, "id": "$response.body#/id"}),
        ),
    ),
    ("GET", f"{_BASE}/webhooks/{{id}}"): Operation(
        "getEndpoint", "Get a webhook endpoint", "Platform: webhooks", _PL, ref("WebhookEndpoint"),
        params=(PID, _ENDPOINT),
    ),
    ("PATCH", f"{_BASE}/webhooks/{{id}}"): Operation(
        "updateEndpoint", "Update a webhook endpoint", "Platform: webhooks", _PL, ref("WebhookEndpoint"),
        body=ENDPOINT_PATCH, params=(PID, _ENDPOINT),
    ),
    ("DELETE", f"{_BASE}/webhooks/{{id}}"): Operation(
        "deleteEndpoint", "Delete a webhook endpoint", "Platform: webhooks", _PL, None, 204, params=(PID, _ENDPOINT)
    ),
    ("POST", f"{_BASE}/webhooks/{{id}}/rotate-secret"): Operation(
        "rotateSecret", "Rotate the signing secret", "Platform: webhooks", _PL, ref("RotatedSecret"),
        params=(PID, _ENDPOINT), description="For 24 h deliveries carry signatures with both secrets.",
    ),
    ("GET", f"{_BASE}/webhooks/{{id}}/deliveries"): Operation(
        "listDeliveries", "List deliveries", "Platform: webhooks", _PL, page_of(ref("WebhookDelivery")),
        params=(PID, _ENDPOINT, *PAGING, choice("status", "pending", "succeeded", "failed")),
    ),
    ("POST", f"{_BASE}/webhooks/{{id}}/deliveries/{{delivery_id}}/replay"): Operation(
        "replayDelivery", "Replay a delivery", "Platform: webhooks", _PL, ref("WebhookDelivery"), 202,
        params=(PID, _ENDPOINT, path_id("delivery_id", "delivery")), errors=(InvalidRequest,),
        description="400 while the endpoint is disabled (SPEC §11.4).",
    ),
    # -- MCP apps and connections (§16.1) -----------------------------------------------------------------------
    ("GET", f"{_BASE}/mcp/apps"): Operation(
        "listMcpApps", "List MCP apps", "Platform: MCP apps", _PL, page_of(ref("McpApp")), params=(PID, *PAGING)
    ),
    ("POST", f"{_BASE}/mcp/apps"): Operation(
        "createMcpApp", "Add an MCP app", "Platform: MCP apps", _PL, ref("McpApp"), 201, body=APP_BODY,
        params=(PID,), links=_links("McpApp", "app_id"),
    ),
    ("GET", f"{_BASE}/mcp/apps/{{app_id}}"): Operation(
        "getMcpApp", "Get an MCP app", "Platform: MCP apps", _PL, ref("McpApp"), params=(PID, _APP)
    ),
    ("PATCH", f"{_BASE}/mcp/apps/{{app_id}}"): Operation(
        "updateMcpApp", "Update an MCP app", "Platform: MCP apps", _PL, ref("McpApp"), body=APP_PATCH,
        params=(PID, _APP),
    ),
    ("DELETE", f"{_BASE}/mcp/apps/{{app_id}}"): Operation(
        "deleteMcpApp", "Delete an MCP app", "Platform: MCP apps", _PL, None, 204, params=(PID, _APP)
    ),
    ("GET", f"{_BASE}/mcp/connections"): Operation(
        "listMcpConnections", "End users' MCP connections (never tokens)", "Platform: MCP apps", _PL,
        page_of(ref("McpConnection")), params=(PID, *PAGING, filter_id("end_user_id", "connections of the end user")),
    ),
    # -- threads (§16.4) ----------------------------------------------------------------------------------------
    ("GET", f"{_BASE}/threads"): Operation(
        "listPlatformThreads", "Every owner's agent threads", "Platform", _PL, page_of(ref("PlatformThread")),
        params=(PID, *PAGING, filter_id("end_user_id", "threads of the end user")),
    ),
}  # fmt: skip
