"""JSON Schemas of what Tollway answers (SPEC §2–§7, §12, §16, §19), the ``components.schemas`` of the OpenAPI
document. Management objects are described exactly (every key required, no other key allowed), so a renderer that
gains, loses or retypes a field fails the conformance tests (``tests/integration/test_openapi_conformance.py``) and
schemathesis; the OpenAI- and Anthropic-shaped inference answers are described by their main fields and stay open
(``additionalProperties: true``), as those APIs grow fields faster than a gateway should pin them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from tollway.domain.keys import END_USER_SCOPES, PLATFORM_SCOPES
from tollway.domain.webhooks import ALL_EVENTS

Schema = dict[str, Any]

STRING: Final[Schema] = {"type": "string"}
INTEGER: Final[Schema] = {"type": "integer"}
BOOLEAN: Final[Schema] = {"type": "boolean"}
USD: Final[Schema] = {"type": "number", "description": "USD, at most 9 decimals (SPEC §9.1)."}
UUID: Final[Schema] = {"type": "string", "format": "uuid"}
TIME: Final[Schema] = {"type": "string", "format": "date-time"}
OBJECT: Final[Schema] = {"type": "object", "additionalProperties": True}
REQUEST_ID: Final[Schema] = {"type": "string", "pattern": "^req_[0-9a-f]{32}$"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    kind = schema.get("type")
    if isinstance(kind, str) and "enum" not in schema and "$ref" not in schema:
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def object_schema(properties: dict[str, Schema], required: Iterable[str] | None = None, *, closed: bool) -> Schema:
    """An object of these ``properties``, all of them ``required`` unless named; ``closed`` allows no other key."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
        "additionalProperties": not closed,
    }


def exact(**properties: Schema) -> Schema:
    """An object with exactly these keys, all present."""
    return object_schema(properties, closed=True)


def _stored(*, tenant: bool = True, updated: bool = True, **fields: Schema) -> dict[str, Schema]:
    """The fields of a stored object: ``id`` (and ``platform_id`` when it belongs to a tenant), its own ``fields``,
    then ``created_at`` (and ``updated_at`` when it can change)."""
    head: dict[str, Schema] = {"id": UUID, "platform_id": UUID} if tenant else {"id": UUID}
    tail: dict[str, Schema] = {"created_at": TIME, "updated_at": TIME} if updated else {"created_at": TIME}
    return {**head, **fields, **tail}


def _limits(suffix: str) -> dict[str, Schema]:
    """The three nullable rate limits (SPEC §10), named ``rpm``, ``tpm``, ``rpd`` followed by ``suffix``."""
    return {f"{name}{suffix}": nullable(INTEGER) for name in ("rpm", "tpm", "rpd")}


def _ledger_row(owner: dict[str, Schema], note: str, **after: Schema) -> Schema:
    """A wallet or budget transaction (SPEC §9.5): what it belongs to, the amount, the ``after`` balances and a
    nullable ``note``."""
    return exact(
        id=UUID,
        **owner,
        type=STRING,
        amount_usd=USD,
        **after,
        **{note: nullable(STRING)},
        metadata=OBJECT,
        request_id=nullable(STRING),
        created_at=TIME,
    )


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


def page_of(item: Schema) -> Schema:
    """SPEC §1.2's list envelope."""
    return exact(
        data={"type": "array", "items": item},
        total={"type": "integer", "minimum": 0},
        page={"type": "integer", "minimum": 1},
        limit={"type": "integer", "minimum": 1, "maximum": 100},
    )


_ERROR_BODY: Final = exact(
    message=STRING,
    type=STRING,
    code=STRING,
    param=nullable(STRING),
)
_SETTINGS: Final = exact(
    default_budget=nullable(exact(max_usd=USD, period=enum("one_time", "daily", "monthly"))),
    markup_percentage={"type": "number", "minimum": 0, "maximum": 1000},
    rate_limits=exact(**_limits("")),
    wallet_low_balance_threshold=nullable(USD),
    mcp_free_calls_per_month=INTEGER,
    mcp_external_servers=BOOLEAN,
    mcp_redirect_origins={"type": "array", "items": STRING},
)
_WALLET_FIELDS: Final = _stored(
    currency=enum("usd"),
    balance_usd=USD,
    held_usd=USD,
    available_usd=USD,
    low_balance_threshold=nullable(USD),
)
_API_KEY_FIELDS: Final = _stored(
    updated=False,
    end_user_id=nullable(UUID),
    type=enum("platform", "end_user"),
    name=nullable(STRING),
    key_prefix=STRING,
    scopes={"type": "array", "items": enum(*sorted({*PLATFORM_SCOPES, *END_USER_SCOPES}))},
    is_active=BOOLEAN,
    expires_at=nullable(TIME),
    last_used_at=nullable(TIME),
    revoked_at=nullable(TIME),
)
_USAGE_FIELDS: Final = _stored(
    updated=False,
    end_user_id=nullable(UUID),
    request_type=enum("chat.completion", "response", "image", "embedding", "moderation", "messages", "mcp"),
    model=STRING,
    provider_id=nullable(UUID),
    provider_model=nullable(STRING),
    prompt_tokens=INTEGER,
    completion_tokens=INTEGER,
    total_tokens=INTEGER,
    cached_tokens=INTEGER,
    latency_ms=nullable(INTEGER),
    ttft_ms=nullable(INTEGER),
    cost_usd=USD,
    charged_usd=nullable(USD),
    uncollected_usd=USD,
    status=enum("success", "error", "interrupted"),
    finish_reason=nullable(STRING),
    error_code=nullable(STRING),
    token_count_method=enum("reported", "estimated"),
    request_id=nullable(STRING),
    session_id=nullable(STRING),
    response_id=nullable(STRING),
    iteration=nullable(INTEGER),
    thread_id=nullable(STRING),
    mcp_app=nullable(STRING),
    mcp_tool=nullable(STRING),
    mcp_free=nullable(BOOLEAN),
    metadata=OBJECT,
)
_HIDDEN_FROM_END_USERS: Final = ("cost_usd", "uncollected_usd", "provider_id", "provider_model")
_BUDGET: Final = exact(
    **_stored(
        end_user_id=UUID,
        max_usd=USD,
        used_usd=USD,
        remaining_usd=USD,
        held_usd=USD,
        available_usd=USD,
        period=enum("one_time", "daily", "monthly"),
        period_start=TIME,
        next_reset_at=nullable(TIME),
        auto_replenish=BOOLEAN,
        replenish_amount=nullable(USD),
        low_balance_threshold=nullable(USD),
        is_active=BOOLEAN,
        is_suspended=BOOLEAN,
    )
)
_WALLET_TXN: Final = _ledger_row({"wallet_id": UUID}, "description", balance_usd_after=USD)
_BUDGET_TXN: Final = _ledger_row(
    {"budget_id": UUID, "platform_id": UUID, "end_user_id": UUID},
    "reason",
    max_usd_after=USD,
    used_usd_after=USD,
    remaining_usd_after=USD,
)
_ENDPOINT_FIELDS: Final = _stored(
    url=STRING,
    events={"type": "array", "items": enum(*ALL_EVENTS)},
    description=nullable(STRING),
    is_active=BOOLEAN,
    disabled_reason=nullable(enum("gone", "manual")),
)
_END_USER_FIELDS: Final = _stored(external_id=STRING, display_name=nullable(STRING), metadata=OBJECT, is_active=BOOLEAN)
_THREAD_FIELDS: Final[dict[str, Schema]] = {
    "id": STRING,
    "object": enum("thread"),
    "created_at": TIME,
    "updated_at": TIME,
    "response_count": INTEGER,
    "metadata": OBJECT,
}
_USAGE_OPEN: Final[Schema] = {"type": "object", "additionalProperties": True}


def _open(required: tuple[str, ...], **properties: Schema) -> Schema:
    """An OpenAI- or Anthropic-shaped object: its main fields described, others allowed."""
    return object_schema(properties, required, closed=False)


COMPONENTS: Final[dict[str, Schema]] = {
    "Error": exact(error=_ERROR_BODY),
    "AnthropicError": object_schema(
        {
            "type": enum("error"),
            "error": _open(("type", "message"), type=STRING, message=STRING),
            "request_id": STRING,
        },
        ("type", "error"),
        closed=True,
    ),
    "Provider": exact(
        **_stored(
            tenant=False,
            slug=STRING,
            name=STRING,
            kind=enum("openai", "openai_compatible", "anthropic", "gemini", "asi1"),
            base_url=STRING,
            is_active=BOOLEAN,
        )
    ),
    "ModelRow": exact(
        **_stored(
            tenant=False,
            slug=STRING,
            provider_id=UUID,
            upstream_model=STRING,
            input_price_per_mtok=USD,
            output_price_per_mtok=USD,
            cached_input_price_per_mtok=nullable(USD),
            cache_write_price_per_mtok=nullable(USD),
            price_per_image=nullable(USD),
            price_per_request=nullable(USD),
            priority=INTEGER,
            min_output_tokens=nullable(INTEGER),
            max_output_tokens=INTEGER,
            context_window=nullable(INTEGER),
            is_active=BOOLEAN,
        )
    ),
    "PriceImportReport": OBJECT,
    "PlatformSettings": _SETTINGS,
    "Platform": exact(**_stored(tenant=False, name=STRING, slug=STRING, settings=ref("PlatformSettings"))),
    "Wallet": exact(**_WALLET_FIELDS),
    "WalletWithRecent": exact(
        **_WALLET_FIELDS, recent_transactions={"type": "array", "items": ref("WalletTransaction")}
    ),
    "WalletTransaction": _WALLET_TXN,
    "ApiKey": exact(**_API_KEY_FIELDS),
    "ApiKeyWithSecret": exact(**_API_KEY_FIELDS, raw_key={"type": "string", "pattern": "^sk-(plat|eu)_"}),
    "CreatedPlatform": exact(platform=ref("Platform"), wallet=ref("Wallet"), api_key=ref("ApiKeyWithSecret")),
    "PlatformWithWallet": exact(platform=ref("Platform"), wallet=ref("Wallet")),
    "WalletTopupResult": exact(wallet=ref("Wallet"), transaction=ref("WalletTransaction")),
    "LlmConfig": exact(
        **_stored(provider_id=UUID, provider_slug=STRING, is_default=BOOLEAN, is_active=BOOLEAN),
    ),
    "UsageLog": exact(**_USAGE_FIELDS),
    "OwnUsageLog": exact(**{k: v for k, v in _USAGE_FIELDS.items() if k not in _HIDDEN_FROM_END_USERS}),
    "EndUser": exact(**_END_USER_FIELDS),
    "CreatedEndUser": exact(**_END_USER_FIELDS, api_key=ref("ApiKeyWithSecret"), budget=nullable(ref("Budget"))),
    "Budget": _BUDGET,
    "BudgetTransaction": _BUDGET_TXN,
    "BudgetChange": exact(budget=ref("Budget"), transaction=ref("BudgetTransaction")),
    "RateLimitOverride": exact(end_user_id=UUID, **_limits("_limit"), updated_at=TIME),
    "EffectiveRateLimits": exact(**_limits("_limit"), resolution=enum("explicit", "default", "none")),
    "WebhookEndpoint": exact(**_ENDPOINT_FIELDS),
    "WebhookEndpointWithSecret": exact(**_ENDPOINT_FIELDS, secret={"type": "string", "pattern": "^whsec_"}),
    "RotatedSecret": exact(secret={"type": "string", "pattern": "^whsec_"}, previous_secret_expires_at=TIME),
    "WebhookDelivery": exact(
        id=UUID,
        endpoint_id=UUID,
        event_id=STRING,
        event_type=STRING,
        webhook_id=STRING,
        status=enum("pending", "succeeded", "failed"),
        attempts={"type": "array", "items": OBJECT},
        next_attempt_at=nullable(TIME),
        created_at=TIME,
    ),
    "McpApp": exact(
        **_stored(
            slug=STRING,
            name=STRING,
            server_url=STRING,
            auth=_open(("type",), type=enum("none", "header", "oauth2")),
            has_secret=BOOLEAN,
            price_per_call_usd=USD,
            allowed_tools=nullable({"type": "array", "items": STRING}),
            is_active=BOOLEAN,
        )
    ),
    "McpConnection": exact(
        app_slug=STRING,
        end_user_id=UUID,
        status=enum("connected", "expired"),
        connected_at=nullable(TIME),
        scopes={"type": "array", "items": STRING},
    ),
    "McpAuthorization": exact(authorize_url=STRING, expires_at=TIME),
    "CheckoutSession": exact(checkout_url=STRING, session_id=STRING),
    "Received": exact(received={"const": True}),
    "McpConfig": exact(
        apps={
            "type": "array",
            "items": exact(
                slug=STRING,
                name=STRING,
                server_url=STRING,
                auth=enum("none", "header", "oauth2"),
                connected=BOOLEAN,
                connected_at=nullable(TIME),
                allowed_tools=nullable({"type": "array", "items": STRING}),
            ),
        }
    ),
    "Thread": exact(**_THREAD_FIELDS),
    "PlatformThread": exact(**_THREAD_FIELDS, end_user_id=nullable(UUID)),
    "ReconcileReport": OBJECT,
    "Health": _open(("status",), status=STRING),
    # -- inference answers (OpenAI and Anthropic shapes: main fields, others allowed) -----------------------------
    "Model": exact(id=STRING, object=enum("model"), created=INTEGER, owned_by=STRING),
    "ModelList": exact(object=enum("list"), data={"type": "array", "items": ref("Model")}),
    "ChatCompletion": _open(
        ("id", "object", "created", "model", "choices"),
        id=STRING,
        object=enum("chat.completion"),
        created=INTEGER,
        model=STRING,
        choices={"type": "array", "items": _open(("index", "message", "finish_reason"), index=INTEGER)},
        usage=_USAGE_OPEN,
    ),
    "Response": _open(
        ("id", "object", "created_at", "status", "model", "output"),
        id=STRING,
        object=enum("response"),
        created_at=INTEGER,
        status=enum("completed", "incomplete", "failed", "in_progress"),
        model=STRING,
        output={"type": "array", "items": _open(("type",), type=STRING)},
        usage=nullable(_USAGE_OPEN),
        previous_response_id=nullable(STRING),
    ),
    "DeletedResponse": exact(id=STRING, object=enum("response"), deleted={"const": True}),
    "Message": _open(
        ("id", "type", "role", "content", "model", "stop_reason", "usage"),
        id=STRING,
        type=enum("message"),
        role=enum("assistant"),
        content={"type": "array", "items": _open(("type",), type=STRING)},
        model=STRING,
        stop_reason=nullable(STRING),
        usage=_USAGE_OPEN,
    ),
    "ImagesResponse": _open(
        ("created", "data"),
        created=INTEGER,
        data={"type": "array", "items": _open((), url=STRING, b64_json=STRING)},
    ),
    "Asi1ImagesResponse": _open(
        ("status", "message", "created", "images"),
        status=INTEGER,
        message=STRING,
        created=INTEGER,
        images={"type": "array", "items": _open(("url",), url=STRING)},
    ),
    "EmbeddingList": _open(
        ("object", "data", "model", "usage"),
        object=enum("list"),
        data={"type": "array", "items": _open(("object", "index", "embedding"), object=enum("embedding"))},
        model=STRING,
        usage=_USAGE_OPEN,
    ),
    "Moderation": _open(("id", "model", "results"), id=STRING, model=STRING, results={"type": "array"}),
    "ThreadItems": page_of(OBJECT),
}
