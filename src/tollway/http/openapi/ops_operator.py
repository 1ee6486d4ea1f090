"""The operator API's operations (SPEC §4, §19): providers, model rows, the price import, platforms, recovery keys,
wallet top-ups and reconciliation. Bodies are the services' own ``Body`` specs."""

from __future__ import annotations

from typing import Final

from tollway.errors import IdempotencyInProgress, IdempotencyKeyMismatch, InvalidRequest
from tollway.http.openapi.operations import (
    IDEMPOTENCY_KEY,
    PAGING,
    PID,
    Access,
    Link,
    Operation,
    choice,
    filter_id,
    path_id,
    query,
)
from tollway.http.openapi.schemas import OBJECT, STRING, page_of, ref
from tollway.services.management.accounts import WALLET_TOPUP_BODY
from tollway.services.management.catalog_admin import MODEL_BODY, MODEL_PATCH, PROVIDER_BODY, PROVIDER_PATCH
from tollway.services.management.credentials import PLATFORM_KEY_BODY
from tollway.services.management.platforms import PLATFORM_BODY

_OP = Access.OPERATOR
_PROVIDER_ID: Final = path_id("id", "provider")
_MODEL_ID: Final = path_id("id", "model row")
_KINDS: Final = ("openai", "openai_compatible", "anthropic", "gemini", "asi1")


def _crud_links(resource: str, id_param: str = "id") -> tuple[Link, ...]:
    """create -> get, update, delete, by the new object's id (schemathesis's stateful phase follows these)."""
    at = {id_param: "$response.body#/id"}
    return (
        Link(f"Get{resource}", f"get{resource}", at),
        Link(f"Update{resource}", f"update{resource}", at),
        Link(f"Delete{resource}", f"delete{resource}", at),
    )


OPERATIONS: Final = {
    ("POST", "/v1/admin/providers"): Operation(
        "createProvider", "Register a provider", "Operator: providers", _OP, ref("Provider"), 201,
        body=PROVIDER_BODY, links=_crud_links("Provider"),
    ),
    ("GET", "/v1/admin/providers"): Operation(
        "listProviders", "List providers", "Operator: providers", _OP, page_of(ref("Provider")),
        params=(*PAGING, choice("kind", *_KINDS)),
    ),
    ("GET", "/v1/admin/providers/{id}"): Operation(
        "getProvider", "Get a provider", "Operator: providers", _OP, ref("Provider"), params=(_PROVIDER_ID,)
    ),
    ("PATCH", "/v1/admin/providers/{id}"): Operation(
        "updateProvider", "Update a provider", "Operator: providers", _OP, ref("Provider"),
        body=PROVIDER_PATCH, params=(_PROVIDER_ID,),
    ),
    ("DELETE", "/v1/admin/providers/{id}"): Operation(
        "deleteProvider", "Delete a provider", "Operator: providers", _OP, None, 204, params=(_PROVIDER_ID,),
        errors=(InvalidRequest,),
        description="Refused (400) while model rows reference it; removes platforms' LLM configs for it.",
    ),
    ("POST", "/v1/admin/models"): Operation(
        "createModel", "Create a priced model row", "Operator: models", _OP, ref("ModelRow"), 201,
        body=MODEL_BODY, links=_crud_links("Model"),
    ),
    ("POST", "/v1/admin/models/import"): Operation(
        "importModelPrices", "Import prices from a LiteLLM catalogue", "Operator: models", _OP,
        ref("PriceImportReport"),
        body={
            **OBJECT,
            "description": "LiteLLM's model_prices_and_context_window.json object itself, or {\"url\": \"https://…\"}.",
        },
        params=(
            query("provider", STRING, "Only this provider's rows (and create its missing rows)."),
            query("dry_run", {"type": "string", "enum": ["true", "false"]}, "Only report what would change."),
        ),
    ),
    ("GET", "/v1/admin/models"): Operation(
        "listModels", "List model rows", "Operator: models", _OP, page_of(ref("ModelRow")),
        params=(*PAGING, query("slug", STRING), filter_id("provider_id", "rows of the provider")),
        description="Ordered by slug, priority, created_at.",
    ),
    ("GET", "/v1/admin/models/{id}"): Operation(
        "getModel", "Get a model row", "Operator: models", _OP, ref("ModelRow"), params=(_MODEL_ID,)
    ),
    ("PATCH", "/v1/admin/models/{id}"): Operation(
        "updateModel", "Update a model row", "Operator: models", _OP, ref("ModelRow"),
        body=MODEL_PATCH, params=(_MODEL_ID,),
    ),
    ("DELETE", "/v1/admin/models/{id}"): Operation(
        "deleteModel", "Delete a model row", "Operator: models", _OP, None, 204, params=(_MODEL_ID,)
    ),
    ("POST", "/v1/admin/platforms"): Operation(
        "createPlatform", "Create a platform, its wallet and first key", "Operator: platforms", _OP,
        ref("CreatedPlatform"), 201, body=PLATFORM_BODY,
        links=(Link("GetPlatformAsOperator", "getPlatformAsOperator", {"pid": "$response.body#/platform/id"}),),
    ),
    ("GET", "/v1/admin/platforms"): Operation(
        "listPlatforms", "List platforms", "Operator: platforms", _OP, page_of(ref("Platform")), params=PAGING
    ),
    ("GET", "/v1/admin/platforms/{pid}"): Operation(
        "getPlatformAsOperator", "Get a platform and its wallet", "Operator: platforms", _OP,
        ref("PlatformWithWallet"), params=(PID,),
    ),
    ("POST", "/v1/admin/platforms/{pid}/api-keys"): Operation(
        "createPlatformKeyAsOperator", "Issue a platform key (recovery)", "Operator: platforms", _OP,
        ref("ApiKeyWithSecret"), 201, body=PLATFORM_KEY_BODY, body_required=False, params=(PID,),
    ),
    ("POST", "/v1/admin/platforms/{pid}/wallet/topup"): Operation(
        "topUpWallet", "Credit a platform's wallet", "Operator: platforms", _OP, ref("WalletTopupResult"),
        body=WALLET_TOPUP_BODY, params=(PID, IDEMPOTENCY_KEY),
        errors=(IdempotencyKeyMismatch, IdempotencyInProgress),
    ),
    ("GET", "/v1/admin/reconcile"): Operation(
        "reconcile", "Recompute the money invariants", "Operator: operations", _OP, ref("ReconcileReport"),
        description="SPEC §9.6 invariants 1, 2 and 6, recomputed from the store.",
    ),
}  # fmt: skip
