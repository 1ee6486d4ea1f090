"""The OpenAPI document (SPEC §18): every served route documented (or excluded for a stated reason), valid OpenAPI
3.1, bodies taken from the very specs the services validate with, and the vendored viewer pinned."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from starlette.routing import Mount, Route

from tollway.domain.bodies import Body
from tollway.http.openapi import document
from tollway.http.openapi.document import EXCLUDED, OPERATIONS, build_document, excluded, openapi_path, served
from tollway.http.openapi.routes import ASSETS
from tollway.http.routes import HOT_PATHS, build_routes
from tollway.services.management.catalog_admin import PROVIDER_BODY, PROVIDER_PATCH

ROUTES = build_routes()


async def _endpoint(_request: object) -> None:
    raise AssertionError("never called")


def test_every_served_route_has_an_operation_or_a_stated_exclusion() -> None:
    undocumented = [(m, p) for m, p in served(ROUTES) if (m, p) not in OPERATIONS and excluded(p) is None]
    assert undocumented == []


def test_every_operation_names_a_served_route() -> None:
    routes = set(served(ROUTES))
    assert [key for key in OPERATIONS if key not in routes] == []


def test_the_fast_paths_are_documented() -> None:
    """The hot paths are served ahead of Starlette's router (http/fastpath.py) by the same handlers."""
    assert {path for method, path in OPERATIONS if method == "POST"} >= set(HOT_PATHS)


def test_a_route_without_an_operation_is_caught() -> None:
    extra = [*ROUTES, Route("/v1/undocumented", _endpoint, methods=["GET"])]
    gaps = [(m, p) for m, p in served(extra) if (m, p) not in OPERATIONS and excluded(p) is None]
    assert gaps == [("GET", "/v1/undocumented")]
    assert "/v1/undocumented" not in build_document(extra)["paths"]


def test_exclusions_hide_no_documented_operation_and_give_a_reason() -> None:
    assert [key for key in OPERATIONS if excluded(key[1]) is not None] == []
    assert all(len(reason) > 20 for reason in EXCLUDED.values())
    assert excluded("/console/platform/overview") is not None
    assert excluded("/v1/mcp/{slug}") is not None
    assert excluded("/v1/mcp/oauth/callback") is None  # a JSON-API neighbour stays documented
    assert excluded("/consoles") is None


def test_the_mcp_proxy_is_served_but_left_out_for_its_reason() -> None:
    assert {("GET", "/v1/mcp/{slug}"), ("POST", "/v1/mcp/{slug}")} <= set(served(ROUTES))
    assert "JSON-RPC" in (excluded("/v1/mcp/{slug}") or "")
    assert "/v1/mcp/{slug}" not in build_document(ROUTES)["paths"]


def test_mounts_are_walked_too() -> None:
    assert ("*", "/docs/assets") in set(served(ROUTES))
    assert ("*", "/elsewhere") in set(served([Mount("/elsewhere", routes=[])]))


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = build_document(ROUTES)
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_operation_ids_are_unique_and_every_link_targets_one() -> None:
    ids = [op.id for op in OPERATIONS.values()]
    assert len(ids) == len(set(ids))
    targets = {link.operation_id for op in OPERATIONS.values() for link in op.links}
    assert targets <= set(ids)


def test_request_bodies_are_the_services_specs() -> None:
    doc = build_document(ROUTES)
    create = doc["paths"]["/v1/admin/providers"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    patch = doc["paths"]["/v1/admin/providers/{id}"]["patch"]["requestBody"]["content"]["application/json"]["schema"]
    assert create == PROVIDER_BODY.schema()
    assert patch == PROVIDER_PATCH.schema()
    assert create["properties"]["slug"]["maxLength"] == 64
    assert patch["properties"]["slug"]["readOnly"] is True  # immutable after creation
    assert create["required"] == ["slug", "name", "kind"]
    assert create["additionalProperties"] is False


def test_every_management_body_is_a_spec() -> None:
    bodies = [op for (method, path), op in OPERATIONS.items() if path.startswith(("/v1/admin", "/v1/platforms"))]
    loose = [op.id for op in bodies if op.body is not None and not isinstance(op.body, Body)]
    assert loose == ["importModelPrices"]  # LiteLLM's catalogue object, judged entry by entry (SPEC §19)


def test_security_scheme_per_key_kind() -> None:
    doc = build_document(ROUTES)
    schemes = doc["components"]["securitySchemes"]
    assert {"operatorKey", "platformKey", "endUserKey"} <= set(schemes)
    paths = doc["paths"]
    assert paths["/v1/admin/providers"]["get"]["security"] == [{"operatorKey": []}]
    assert paths["/v1/platforms/{pid}/end-users"]["post"]["security"] == [{"platformKey": ["manage"]}]
    assert paths["/v1/me/budget"]["get"]["security"] == [{"endUserKey": []}]
    assert paths["/v1/chat/completions"]["post"]["security"] == [
        {"platformKey": ["inference"]},
        {"endUserKey": ["inference"]},
    ]
    assert paths["/openapi.json"]["get"]["security"] == []


def test_errors_of_section_3_are_documented_per_operation() -> None:
    doc = build_document(ROUTES)
    topup = doc["paths"]["/v1/platforms/{pid}/end-users/{id}/budget/debit"]["post"]["responses"]
    assert {"400", "401", "402", "403", "404", "409", "413", "422", "429", "500", "503"} <= set(topup)
    assert "budget_exhausted" in topup["402"]["description"]
    assert "Retry-After" in topup["429"]["headers"]
    chat = doc["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"402", "404", "422", "502", "504"} <= set(chat)
    assert "text/event-stream" in chat["200"]["content"]
    messages = doc["paths"]["/v1/messages"]["post"]["responses"]
    assert messages["401"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AnthropicError"}


def test_business_refusals_without_a_body_are_documented() -> None:
    """Found by schemathesis's stateful phase: deleting a provider that still has model rows is a 400."""
    paths = build_document(ROUTES)["paths"]
    assert "invalid_request" in paths["/v1/admin/providers/{id}"]["delete"]["responses"]["400"]["description"]
    replay = paths["/v1/platforms/{pid}/webhooks/{id}/deliveries/{delivery_id}/replay"]["post"]["responses"]
    assert "400" in replay
    assert "thread_busy" in paths["/v1/threads/{thread_id}"]["delete"]["responses"]["409"]["description"]


def test_create_get_delete_links() -> None:
    doc = build_document(ROUTES)
    links = doc["paths"]["/v1/platforms/{pid}/end-users"]["post"]["responses"]["201"]["links"]
    assert links["GetEndUser"] == {
        "operationId": "getEndUser",
        "parameters": {"pid": "$request.path.pid", "id": "$response.body#/id"},
    }
    assert links["DeleteEndUser"]["operationId"] == "deleteEndUser"


def test_paths_use_openapi_templates() -> None:
    assert openapi_path("/v1/models/{slug:path}") == "/v1/models/{slug}"
    assert "/v1/models/{slug}" in build_document(ROUTES)["paths"]


def test_inference_bodies_list_the_parsers_fields() -> None:
    from tollway.domain.chat_request import REQUEST_FIELDS

    doc = build_document(ROUTES)
    chat = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(chat["properties"]) == set(REQUEST_FIELDS)
    assert chat["required"] == ["model", "messages"]


def test_the_viewer_is_pinned() -> None:
    readme = (ASSETS / "README.md").read_text()
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        digest = hashlib.sha256((ASSETS / name).read_bytes()).hexdigest()
        assert re.search(rf"`{re.escape(name)}` \| npm `swagger-ui-dist` \| 5\.35\.0 \| {digest}", readme), name
    assert "Apache License" in (ASSETS / "LICENSE.swagger-ui").read_text()


@pytest.mark.parametrize("name", ["tollway-docs.js", "swagger-ui-bundle.js", "swagger-ui.css"])
def test_the_viewer_ships_in_the_package(name: str) -> None:
    assert (Path(document.__file__).parent.parent / "static" / "docs" / name).is_file()


def test_the_document_is_the_same_bytes_in_every_process() -> None:
    """Instances behind one load balancer serve one document: nothing in it may follow a set's iteration order,
    which changes with the hash seed of each process (these two seeds order the platform key scopes differently)."""
    script = (
        "import sys, orjson\n"
        "from tollway.http.openapi.document import build_document\n"
        "from tollway.http.routes import build_routes\n"
        "sys.stdout.buffer.write(orjson.dumps(build_document(build_routes())))\n"
    )
    documents = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            capture_output=True,
            timeout=120,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(documents) == 1
