"""SPEC §19: LiteLLM's price catalogue read into model-row changes, exactly (no binary float on the way), with a
real subset of the published file (tests/data/litellm_model_prices.json)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from tollway.domain.catalog import ModelRow, Provider, ProviderKind
from tollway.domain.price_catalog import (
    CatalogError,
    Change,
    parse_catalog,
    plan_import,
    report_body,
    report_lines,
)
from tollway.domain.pricing import Prices

CATALOG_PATH = Path(__file__).parents[1] / "data" / "litellm_model_prices.json"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def provider(kind: ProviderKind, slug: str | None = None) -> Provider:
    return Provider(f"prov-{kind.value}", slug or kind.value, "P", kind, "https://example.com", True, NOW, NOW)


def row(p: Provider, upstream: str, slug: str | None = None, **extra: Any) -> ModelRow:
    values: dict[str, Any] = {
        "prices": Prices(1, 2),
        "price_per_image_nanos": None,
        "priority": 100,
        "min_output_tokens": None,
        "max_output_tokens": 100,
        "context_window": None,
        "is_active": True,
        **extra,
    }
    return ModelRow(f"row-{upstream}", slug or upstream, p.id, upstream, created_at=NOW, updated_at=NOW, **values)


@pytest.fixture(scope="module")
def catalog() -> dict[str, Any]:
    return parse_catalog(CATALOG_PATH.read_bytes())


def test_the_real_catalogue_parses_exactly(catalog: dict[str, Any]) -> None:
    assert len(catalog) >= 250 and "sample_spec" in catalog
    assert catalog["gpt-4o-mini"]["input_cost_per_token"] == Decimal("1.5e-07")  # as written, not a binary float
    assert isinstance(catalog["gpt-4o-mini"]["max_output_tokens"], int)


def test_update_sets_prices_cache_prices_and_limits(catalog: dict[str, Any]) -> None:
    anthropic = provider(ProviderKind.ANTHROPIC)
    sonnet = row(anthropic, "claude-sonnet-4-5", "sonnet")
    plan = plan_import(catalog, [anthropic], [sonnet], create=False)
    assert plan.malformed == [] and len(plan.updates) == 1
    update = plan.updates[0]
    assert (update.row.id, update.entry) == (sonnet.id, "claude-sonnet-4-5")
    # $3 / $15 / $0.30 / $3.75 per Mtok, in n$ per Mtok; 200k context, 64k output
    assert update.changes == {
        "input_price_per_mtok": Change(1, 3_000_000_000),
        "output_price_per_mtok": Change(2, 15_000_000_000),
        "cached_input_price_per_mtok": Change(None, 300_000_000),
        "cache_write_price_per_mtok": Change(None, 3_750_000_000),
        "context_window": Change(None, 200_000),
        "max_output_tokens": Change(100, 64_000),
    }


def test_prefixed_keys_match_their_short_name_and_exact_keys_win() -> None:
    gemini = provider(ProviderKind.GEMINI)
    flash = row(gemini, "gemini-2.5-flash")
    catalog = {
        "gemini/gemini-2.5-flash": {"litellm_provider": "gemini", "input_cost_per_token": Decimal("3e-07")},
        "gemini-2.5-flash": {"litellm_provider": "gemini", "input_cost_per_token": Decimal("4e-07")},
    }
    plan = plan_import(catalog, [gemini], [flash], create=False)
    assert [(u.entry, u.changes["input_price_per_mtok"].new) for u in plan.updates] == [
        ("gemini-2.5-flash", 400_000_000)
    ]
    assert plan.ignored == 1
    alone = plan_import(
        {"gemini/gemini-2.5-flash": catalog["gemini/gemini-2.5-flash"]}, [gemini], [flash], create=False
    )
    assert [u.entry for u in alone.updates] == ["gemini/gemini-2.5-flash"]


def test_entries_of_other_providers_are_only_counted(catalog: dict[str, Any]) -> None:
    openai = provider(ProviderKind.OPENAI)
    # an Anthropic entry never prices an openai row, even with the same upstream name
    plan = plan_import(catalog, [openai], [row(openai, "claude-sonnet-4-5")], create=False)
    assert all(u.entry != "claude-sonnet-4-5" for u in plan.updates)
    owners = [v.get("litellm_provider") for k, v in catalog.items() if k != "sample_spec"]
    assert plan.ignored == 1 + sum(1 for o in owners if o != "openai")
    assert len(plan.unknown) == owners.count("openai")  # no openai row matches: each openai entry is reported


def test_openai_compatible_providers_match_by_slug(catalog: dict[str, Any]) -> None:
    groq = provider(ProviderKind.OPENAI_COMPATIBLE, "groq")
    name = next(k for k, v in catalog.items() if v.get("litellm_provider") == "groq").removeprefix("groq/")
    plan = plan_import(catalog, [groq], [row(groq, name)], create=False)
    assert len(plan.updates) == 1 and plan.updates[0].entry == f"groq/{name}"
    other = provider(ProviderKind.OPENAI_COMPATIBLE, "my-vllm")
    assert plan_import(catalog, [other], [row(other, name)], create=False).updates == []


def test_unchanged_rows_and_absent_fields() -> None:
    openai = provider(ProviderKind.OPENAI)
    current = row(openai, "m", prices=Prices(150_000_000, 600_000_000))
    catalog = {"m": {"litellm_provider": "openai", "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07}}
    plan = plan_import(parse_catalog(orjson.dumps(catalog)), [openai], [current], create=False)
    assert (plan.updates, plan.unchanged) == ([], 1)  # nothing nulled: the entry has no cache or limit fields


def test_creation_only_for_chat_entries_of_the_selected_provider(catalog: dict[str, Any]) -> None:
    anthropic = provider(ProviderKind.ANTHROPIC)
    plan = plan_import(catalog, [anthropic], [], create=True)
    chat = [k for k, v in catalog.items() if v.get("litellm_provider") == "anthropic" and v.get("mode") == "chat"]
    assert sorted(c.slug for c in plan.creates) == sorted(chat)
    created = next(c for c in plan.creates if c.slug == "claude-sonnet-4-5")
    assert created.values["cache_write_price_per_mtok"] == 3_750_000_000
    assert plan_import(catalog, [anthropic], [], create=False).creates == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0.000001", "must be a number of USD"),
        (-1, "at least 0"),
        (True, "must be a number of USD"),
        (Decimal("1.23e-16"), "not a whole number of n$ per million tokens"),
        (Decimal("2000"), "above 10^9 USD"),
    ],
)
def test_malformed_prices_are_reported_with_their_field(value: object, reason: str) -> None:
    openai = provider(ProviderKind.OPENAI)
    plan = plan_import(
        {"m": {"litellm_provider": "openai", "input_cost_per_token": value}}, [openai], [row(openai, "m")], create=False
    )
    assert plan.updates == [] and not plan.applicable
    (problem,) = plan.malformed
    assert (problem.param, reason in problem.reason) == ("m.input_cost_per_token", True)


def test_binary_float_renderings_round_to_the_nearest_nano() -> None:
    openai = provider(ProviderKind.OPENAI)
    noisy = {"litellm_provider": "openai", "input_cost_per_token": Decimal("9.499999999999999E-7")}
    plan = plan_import({"m": noisy}, [openai], [row(openai, "m")], create=False)
    assert plan.updates[0].changes["input_price_per_mtok"] == Change(1, 950_000_000, rounded=True)


def test_limits_below_the_row_minimum_are_malformed_and_zero_limits_are_absent() -> None:
    openai = provider(ProviderKind.OPENAI)
    gpt5 = row(openai, "m", min_output_tokens=16)
    plan = plan_import({"m": {"litellm_provider": "openai", "max_output_tokens": 8}}, [openai], [gpt5], create=False)
    assert [p.param for p in plan.malformed] == ["m.max_output_tokens"]
    moderation = {"litellm_provider": "openai", "max_output_tokens": 0, "input_cost_per_token": 0}
    plan = plan_import({"m": moderation}, [openai], [row(openai, "m")], create=False)
    assert plan.malformed == [] and list(plan.updates[0].changes) == ["input_price_per_mtok"]


def test_image_prices_only_on_image_kinds() -> None:
    entry = {"litellm_provider": "gemini", "output_cost_per_image": Decimal("0.039")}
    gemini = provider(ProviderKind.GEMINI)
    assert plan_import({"img": entry}, [gemini], [row(gemini, "img")], create=False).unchanged == 1
    openai = provider(ProviderKind.OPENAI)
    plan = plan_import({"img": {**entry, "litellm_provider": "openai"}}, [openai], [row(openai, "img")], create=False)
    assert plan.updates[0].changes == {"price_per_image": Change(None, 39_000_000)}


def test_not_json_or_not_an_object() -> None:
    for raw in (b"[1]", b"{", b'{"a": NaN}'):
        with pytest.raises(CatalogError):
            parse_catalog(raw)


def test_report_shows_usd_and_counts(catalog: dict[str, Any]) -> None:
    anthropic = provider(ProviderKind.ANTHROPIC)
    plan = plan_import(catalog, [anthropic], [row(anthropic, "claude-sonnet-4-5", "sonnet")], create=False)
    body = orjson.loads(orjson.dumps(report_body(plan, "anthropic", dry_run=True, applied=False)))
    (updated,) = body["updated"]
    assert updated["changes"]["input_price_per_mtok"] == {"old": 0.000000001, "new": 3}
    assert updated["changes"]["cache_write_price_per_mtok"] == {"old": None, "new": 3.75}
    assert updated["changes"]["max_output_tokens"] == {"old": 100, "new": 64000}
    raw = orjson.dumps(report_body(plan, None, dry_run=True, applied=False))
    assert b'"old":0.000000001' in raw and not re.search(rb"\d[eE][-+]?\d", raw)  # §9.1: no exponent
    lines = report_lines(plan, dry_run=True, applied=False)
    assert lines[0].startswith(
        "update anthropic/sonnet (entry claude-sonnet-4-5): input_price_per_mtok 0.000000001 -> 3,"
    )
    assert lines[-1].endswith("dry run, nothing applied")
