"""Operations of the inference API (SPEC §7, §19), threads (§16.4), end-user self-service (§6, §16.2), the OAuth
callback, the operations endpoints (§13.4) and the document itself (§18)."""

from __future__ import annotations

from typing import Final

from tollway.domain.threads import THREAD_ID
from tollway.errors import BelowMinValue as BelowMin
from tollway.errors import (
    BudgetExhausted,
    BudgetSuspended,
    McpAppNotConnected,
    ModelNotFound,
    NotFound,
    ProviderUnavailable,
    ThreadBusy,
    UpstreamError,
    UpstreamInvalidRequest,
    UpstreamRateLimited,
    UpstreamTimeout,
    WalletInsufficient,
)
from tollway.http.openapi import inference_bodies as bodies
from tollway.http.openapi.operations import PAGING, TIME_RANGE, Access, Link, Operation, Param, choice, query
from tollway.http.openapi.schemas import OBJECT, STRING, page_of, ref
from tollway.services.agents.mcp_connections import CONNECT_BODY
from tollway.services.management.accounts import LOG_REQUEST_TYPES, LOG_STATUSES

_INF = Access.INFERENCE
_ME = Access.END_USER
_PUB = Access.PUBLIC
# A paid call's errors after the body (SPEC §8 steps 3b-9).
PAID: Final = (
    BelowMin, ModelNotFound, BudgetSuspended, BudgetExhausted, WalletInsufficient, UpstreamInvalidRequest,
    UpstreamRateLimited, UpstreamError, UpstreamTimeout, ProviderUnavailable,
)  # fmt: skip
_RESPONSE_ID: Final = Param("response_id", "path", {"type": "string", "maxLength": 256}, description="resp_…")
_THREAD_ID: Final = Param("thread_id", "path", {"type": "string", "pattern": f"^{THREAD_ID.pattern}$"})
_APP_SLUG: Final = Param("slug", "path", {"type": "string", "maxLength": 63}, description="The MCP app's slug.")
_SESSION: Final = Param(
    "x-session-id", "header", {"type": "string", "maxLength": 256}, description="Logged as the row's session_id."
)

OPERATIONS: Final = {
    # -- operations endpoints (§13.4) ---------------------------------------------------------------------------
    ("GET", "/healthz"): Operation("healthz", "The process runs", "Operations", _PUB, ref("Health")),
    ("GET", "/readyz"): Operation(
        "readyz", "The instance can serve", "Operations", _PUB, ref("Health"),
        description="503 service_unavailable while draining, when the database does not answer or a migration is due.",
    ),
    ("GET", "/metrics"): Operation(
        "metrics", "Prometheus metrics", "Operations", _PUB, STRING, media="text/plain"
    ),
    # -- the document (§18) -------------------------------------------------------------------------------------
    ("GET", "/openapi.json"): Operation("openapi", "This OpenAPI document", "Operations", _PUB, OBJECT),
    ("GET", "/docs"): Operation("docs", "The document, rendered", "Operations", _PUB, STRING, media="text/html"),
    # -- models (§7.1) ------------------------------------------------------------------------------------------
    ("GET", "/v1/models"): Operation("listInferenceModels", "Usable models", "Inference", _INF, ref("ModelList")),
    ("GET", "/v1/models/{slug:path}"): Operation(
        "getInferenceModel", "One usable model", "Inference", _INF, ref("Model"),
        params=(Param("slug", "path", STRING),), errors=(ModelNotFound,),
    ),
    # -- paid calls (§7, §19) -----------------------------------------------------------------------------------
    ("POST", "/v1/chat/completions"): Operation(
        "createChatCompletion", "Chat completion", "Inference", _INF, ref("ChatCompletion"), body=bodies.CHAT,
        params=(_SESSION,), errors=PAID, streams=True,
    ),
    ("POST", "/v1/messages"): Operation(
        "createMessage", "Anthropic Messages", "Inference", Access.MESSAGES, ref("Message"), body=bodies.MESSAGES,
        params=(
            _SESSION,
            Param("anthropic-version", "header", STRING, description="Accepted, not required."),
        ),
        errors=PAID, streams=True,
        description="Errors use Anthropic's envelope with SPEC §3's statuses; the key may come as x-api-key.",
    ),
    ("POST", "/v1/responses"): Operation(
        "createResponse", "Responses API turn (the agent endpoint)", "Inference", _INF, ref("Response"),
        body=bodies.RESPONSES, errors=(*PAID, ThreadBusy, McpAppNotConnected), streams=True,
        links=(
            Link("GetResponse", "getResponse", {"response_id": "$response.body#/id"}),
            Link("DeleteResponse", "deleteResponse", {"response_id": "$response.body#/id"}),
        ),
    ),
    ("GET", "/v1/responses/{response_id}"): Operation(
        "getResponse", "A stored response", "Inference", _INF, ref("Response"), params=(_RESPONSE_ID,)
    ),
    ("DELETE", "/v1/responses/{response_id}"): Operation(
        "deleteResponse", "Delete a stored response", "Inference", _INF, ref("DeletedResponse"),
        params=(_RESPONSE_ID,),
    ),
    ("POST", "/v1/images/generations"): Operation(
        "createImages", "Generate images", "Inference", _INF, ref("ImagesResponse"), body=bodies.IMAGES,
        params=(_SESSION,), errors=PAID,
    ),
    ("POST", "/v1/image/generate"): Operation(
        "createImageAsi1", "Generate an image (ASI:One shape)", "Inference", _INF, ref("Asi1ImagesResponse"),
        body=bodies.ASI1_IMAGES, params=(_SESSION,), errors=PAID,
    ),
    ("POST", "/v1/embeddings"): Operation(
        "createEmbeddings", "Embeddings", "Inference", _INF, ref("EmbeddingList"), body=bodies.EMBEDDINGS,
        errors=PAID,
    ),
    ("POST", "/v1/moderations"): Operation(
        "createModeration", "Moderation", "Inference", _INF, ref("Moderation"), body=bodies.MODERATIONS,
        errors=PAID,
    ),
    # -- threads (§16.4) ----------------------------------------------------------------------------------------
    ("GET", "/v1/threads"): Operation(
        "listThreads", "The caller's agent threads", "Threads", _INF, page_of(ref("Thread")), params=PAGING
    ),
    ("GET", "/v1/threads/{thread_id}"): Operation(
        "getThread", "A thread", "Threads", _INF, ref("Thread"), params=(_THREAD_ID,)
    ),
    ("DELETE", "/v1/threads/{thread_id}"): Operation(
        "deleteThread", "Delete a thread and its stored responses", "Threads", _INF, None, 204,
        params=(_THREAD_ID,), errors=(ThreadBusy,),
    ),
    ("GET", "/v1/threads/{thread_id}/items"): Operation(
        "listThreadItems", "A thread's items in order", "Threads", _INF, ref("ThreadItems"),
        params=(_THREAD_ID, *PAGING),
    ),
    # -- self-service (§6, §16.2) -------------------------------------------------------------------------------
    ("GET", "/v1/me/budget"): Operation(
        "getOwnBudget", "The caller's active budget", "Self-service", _ME, ref("Budget"),
        description="404 not_found when no budget is active.", errors=(NotFound,),
    ),
    ("GET", "/v1/me/usage"): Operation(
        "listOwnUsage", "The caller's usage rows", "Self-service", _ME, page_of(ref("OwnUsageLog")),
        params=(
            *PAGING, query("model", STRING), choice("status", *LOG_STATUSES),
            choice("request_type", *LOG_REQUEST_TYPES), *TIME_RANGE,
        ),
    ),
    ("GET", "/v1/me/rate-limits"): Operation(
        "getOwnRateLimits", "The caller's effective rate limits", "Self-service", _ME, ref("EffectiveRateLimits")
    ),
    ("POST", "/v1/me/mcp/apps/{slug}/connect"): Operation(
        "connectMcpApp", "Start an OAuth connection to an MCP app", "Self-service", _ME, ref("McpAuthorization"),
        body=CONNECT_BODY, body_required=False, params=(_APP_SLUG,),
    ),
    ("DELETE", "/v1/me/mcp/apps/{slug}/connection"): Operation(
        "disconnectMcpApp", "Delete the caller's connection", "Self-service", _ME, None, 204, params=(_APP_SLUG,)
    ),
    ("GET", "/v1/me/mcp-config"): Operation(
        "getMcpConfig", "The MCP configuration to give an MCP client", "Self-service", _ME, ref("McpConfig")
    ),
    ("POST", "/v1/stripe/webhook"): Operation(
        "stripeWebhook", "Stripe's events (card top-ups)", "Operations", _PUB, ref("Received"),
        body={**OBJECT, "description": "A Stripe event, verified against Stripe-Signature."},
        params=(Param("Stripe-Signature", "header", STRING, required=True),),
        errors=(NotFound,),
        description="No key: Stripe signs it (300 s tolerance, else 400). 404 when card top-ups are not configured.",
    ),
    ("GET", "/v1/mcp/oauth/callback"): Operation(
        "mcpOAuthCallback", "OAuth redirect target of MCP connections", "Self-service", _PUB, STRING,
        media="text/html",
        params=(query("code", STRING), query("state", STRING), query("error", STRING)),
        also_ok={303: "Back to the redirect_uri given at connect, with mcp_app and status."},
        description="No key: the single-use state authenticates; a reused, expired or forged state is a 400.",
    ),
}  # fmt: skip
