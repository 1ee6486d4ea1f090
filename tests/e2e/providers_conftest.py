"""The provider-conformance rows and the tenants they need: one row per adapter kind (and per ASI:One shape), each
seeded through the real operator and platform APIs against the fake upstream speaking that kind's wire format.

Adding a provider adds a ``Row``; the suite in test_provider_conformance.py runs every test against every row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.seed import (
    FAKE_PROVIDER_KEY,
    Tenant,
    create_model,
    create_provider,
    create_tenant,
)
from tollway.fake_upstream.server import FakeUpstreamThread

THOUGHT = "Let me think."
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]

# slug -> upstream model name; the fake upstream's behaviour is chosen by that name, in every wire format.
MODELS = {
    "echo": "fake/echo",
    "usage": "fake/usage?in=1200&out=300&cached=200",
    "tool": 'fake/tool-call?name=get_weather&args={"city":"Paris"}',
    "thinker": f"fake/echo?thought={THOUGHT}",
    "cut": "fake/stream-cut?after=2",
    "mid-error": "fake/stream-error?after=2",
    "error-400": "fake/error?status=400",
    "error-401": "fake/error?status=401",
    "error-429": "fake/error?status=429&retry_after=0",
    "error-500": "fake/error?status=500",
    "garbage": "fake/garbage",
    "slow": "fake/echo?ms=1500",
    "redirect": "fake/redirect",
    "big": "fake/words?n=1000",
}
# The fallback slug: a failing primary (priority 0) and a backup row on a second provider, priced differently.
FALLBACK_PRIMARY = "fake/error?status=503&retry_after=0"
FALLBACK_BACKUP = "fake/usage?in=5&out=6"
BACKUP_PRICES = {"input_price_per_mtok": "1", "output_price_per_mtok": "2"}


@dataclass(frozen=True)
class Row:
    id: str
    kind: str  # the provider kind under test
    dialect: str  # the fake upstream's wire format for it (its base URL)
    json_mode: bool  # response_format json_object/json_schema honoured (else refused, SPEC §7.4)
    n: bool  # n > 1 honoured (else refused)
    asi1: bool = False  # ASI:One extensions and x-session-id forwarded


ROWS = [
    Row("openai", "openai", "openai", json_mode=True, n=True),
    Row("openai_compatible", "openai_compatible", "openai", json_mode=True, n=True),  # xAI, Groq, vLLM, Ollama
    Row("anthropic", "anthropic", "anthropic", json_mode=False, n=False),
    Row("gemini", "gemini", "gemini", json_mode=True, n=True),
    Row("asi1", "asi1", "asi1", json_mode=True, n=False, asi1=True),
    Row("asi1-old", "asi1", "asi1-old", json_mode=True, n=False, asi1=True),
]


@dataclass(frozen=True)
class Stack:
    row: Row
    tenant: Tenant
    backup_slug: str
    base_url: str


def build_stack(admin: httpx.Client, gateway_url: str, fake: FakeUpstreamThread, row: Row) -> Stack:
    base_url = fake.dialect_base_url(row.dialect)
    primary = create_provider(admin, base_url, kind=row.kind)
    for slug, upstream in MODELS.items():
        extra = {"cached_input_price_per_mtok": "0.075"} if slug == "usage" else {}
        create_model(admin, primary["id"], slug, upstream, **extra)
    create_model(admin, primary["id"], "fallback", FALLBACK_PRIMARY, priority=0)
    backup = create_provider(admin, base_url, kind=row.kind)
    create_model(admin, backup["id"], "fallback", FALLBACK_BACKUP, priority=1, **BACKUP_PRICES)
    tenant = create_tenant(admin, gateway_url, primary["id"], primary["slug"])
    config = {"provider_id": backup["id"], "api_key": FAKE_PROVIDER_KEY}
    response = tenant.client.post(f"/v1/platforms/{tenant.platform_id}/llm-configs", json=config)
    assert response.status_code == 201, response.text
    return Stack(row, tenant, backup["slug"], base_url)


def session_id() -> str:
    return f"sess-{uuid.uuid4().hex[:12]}"
