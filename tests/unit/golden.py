"""Golden JSON fixtures for the translate tests: ``tests/unit/fixtures/<provider>/<case>.json`` holds an ``input``
and the ``output`` it must translate to. ``TOLLWAY_UPDATE_GOLDEN=1 pytest tests/unit`` rewrites the outputs;
review the diff before committing it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tollway.domain.catalog import Candidate, ModelRow, Provider, ProviderKind
from tollway.domain.chat_request import ChatRequest, parse_chat_request
from tollway.domain.pricing import Prices, Usage

FIXTURES = Path(__file__).parent / "fixtures"
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def load(provider: str, case: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((FIXTURES / provider / f"{case}.json").read_bytes())
    return data


def check(provider: str, case: str, actual: Any) -> None:
    """Compare ``actual`` (made JSON-plain) with the fixture's output, or rewrite it when updating."""
    path = FIXTURES / provider / f"{case}.json"
    fixture = load(provider, case)
    plain = orjson.loads(orjson.dumps(actual))
    if os.environ.get("TOLLWAY_UPDATE_GOLDEN") == "1":
        fixture["output"] = plain
        path.write_bytes(orjson.dumps(fixture, option=orjson.OPT_INDENT_2) + b"\n")
        return
    assert plain == fixture["output"], f"{path.name}: translation differs from the golden output"


def request(body: dict[str, Any]) -> ChatRequest:
    return parse_chat_request(body)


def candidate(
    kind: ProviderKind, upstream_model: str = "upstream-model", base_url: str = "https://x.test"
) -> Candidate:
    provider = Provider("p1", f"{kind.value}-main", "Main", kind, base_url, True, _EPOCH, _EPOCH)
    row = ModelRow(
        "m1", "chat", "p1", upstream_model, Prices(150, 600), None, 0, None, 1000, None, True, _EPOCH, _EPOCH
    )
    return Candidate(row, provider, "sk-provider-key-123456")


def usage_json(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
    }
