"""The operator API through the SDK (SPEC §4, §9.6, §19) against a live Tollway: providers, model rows, platforms,
recovery keys, wallet top-ups, reconciliation and the price import, every answer parsed into its typed model."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tollway_sdk import InvalidRequestError, ObjectNotFoundError, Tollway
from tollway_sdk.types import CreatedAPIKey, CreatedPlatform, Model, Provider, Reconciliation

CATALOG = Path(__file__).parents[3] / "tests" / "data" / "litellm_model_prices.json"


def test_providers_crud(admin: Tollway) -> None:
    slug = f"p-{uuid.uuid4().hex[:8]}"
    created = admin.admin.providers.create(
        slug=slug, name="Local", kind="openai_compatible", base_url="http://127.0.0.1:9/v1/"
    )
    assert isinstance(created, Provider)
    assert (created.slug, created.kind, created.is_active) == (slug, "openai_compatible", True)
    assert created.base_url == "http://127.0.0.1:9/v1"  # the trailing slash dropped
    assert created.created_at.tzinfo is not None
    assert admin.admin.providers.retrieve(created.id) == created
    assert created.id in {p.id for p in admin.admin.providers.list(kind="openai_compatible", limit=100)}
    assert created.id not in {p.id for p in admin.admin.providers.list(kind="anthropic", limit=100)}
    updated = admin.admin.providers.update(created.id, name="Renamed", is_active=False)
    assert (updated.name, updated.is_active, updated.slug) == ("Renamed", False, slug)
    admin.admin.providers.delete(created.id)
    with pytest.raises(ObjectNotFoundError) as caught:
        admin.admin.providers.retrieve(created.id)
    assert caught.value.status == 404 and caught.value.request_id and caught.value.request_id.startswith("req_")


def test_models_crud_with_exact_prices(admin: Tollway, provider: Provider) -> None:
    slug = f"m-{uuid.uuid4().hex[:8]}"
    created = admin.admin.models.create(
        slug=slug,
        provider_id=provider.id,
        upstream_model="fake/echo",
        input_price_per_mtok=Decimal("0.000000001"),
        output_price_per_mtok="1234.567890123",
        cached_input_price_per_mtok=Decimal("1E-7"),
        max_output_tokens=64,
        min_output_tokens=16,
        context_window=4096,
        priority=7,
    )
    assert isinstance(created, Model)
    assert created.input_price_per_mtok == Decimal("0.000000001")
    assert created.output_price_per_mtok == Decimal("1234.567890123")
    assert created.cached_input_price_per_mtok == Decimal("0.0000001")
    limits = (created.min_output_tokens, created.max_output_tokens, created.context_window, created.priority)
    assert limits == (16, 64, 4096, 7)
    assert [m.id for m in admin.admin.models.list(slug=slug)] == [created.id]
    assert admin.admin.models.retrieve(created.id) == created
    updated = admin.admin.models.update(created.id, output_price_per_mtok=2, cached_input_price_per_mtok=None)
    assert updated.output_price_per_mtok == Decimal(2) and updated.cached_input_price_per_mtok is None
    assert updated.input_price_per_mtok == Decimal("0.000000001")
    admin.admin.models.delete(created.id)
    assert list(admin.admin.models.list(slug=slug)) == []


def test_a_float_amount_is_refused_before_anything_is_sent(admin: Tollway, provider: Provider) -> None:
    with pytest.raises(TypeError, match="input_price_per_mtok"):
        admin.admin.models.create(
            slug="float",
            provider_id=provider.id,
            upstream_model="x",
            input_price_per_mtok=0.1,  # type: ignore[arg-type]
            output_price_per_mtok=1,
            max_output_tokens=1,
        )
    assert list(admin.admin.models.list(slug="float")) == []


def test_platforms_keys_and_wallet_topups(admin: Tollway, gateway_url: str) -> None:
    created = admin.admin.platforms.create(
        name="Acme Notes",
        settings={"markup_percentage": Decimal("12.5"), "default_budget": {"max_usd": "5", "period": "monthly"}},
    )
    assert isinstance(created, CreatedPlatform)
    assert created.api_key.raw_key.startswith("sk-plat_") and created.wallet.balance_usd == 0
    assert created.platform.settings.markup_percentage == Decimal("12.5")
    assert created.platform.settings.default_budget is not None
    assert created.platform.settings.default_budget.max_usd == 5
    pid = created.platform.id
    topup = admin.admin.platforms.topup_wallet(pid, amount_usd="0.000000001", description="first nano")
    assert topup.wallet.balance_usd == Decimal("0.000000001") and topup.transaction.type == "topup"
    topup = admin.admin.platforms.topup_wallet(pid, amount_usd=Decimal("12.345678901"), metadata={"invoice": "A-1"})
    assert topup.wallet.balance_usd == Decimal("12.345678902")
    assert topup.transaction.amount_usd == Decimal("12.345678901") and topup.transaction.metadata == {"invoice": "A-1"}
    fetched = admin.admin.platforms.retrieve(pid)
    assert fetched.platform == created.platform and fetched.wallet.balance_usd == Decimal("12.345678902")
    assert pid in {p.id for p in admin.admin.platforms.list(limit=100)}
    expires = datetime.now(UTC) + timedelta(days=1)
    key = admin.admin.platforms.create_api_key(pid, name="recovery", scopes=["manage"], expires_at=expires)
    assert isinstance(key, CreatedAPIKey)
    assert key.raw_key.startswith("sk-plat_") and key.scopes == ["manage"] and key.name == "recovery"
    assert key.expires_at is not None and abs((key.expires_at - expires).total_seconds()) < 1
    recovered = Tollway(base_url=gateway_url, api_key=key.raw_key, platform_id=pid)
    assert recovered.platform.retrieve().id == pid
    recovered.close()


def test_reconcile(admin: Tollway) -> None:
    report = admin.admin.reconcile()
    assert isinstance(report, Reconciliation)
    assert report.ok is True and report.differences == [] and report.wallets >= 1


def test_price_import_dry_run_then_applied(admin: Tollway) -> None:
    catalog = json.loads(CATALOG.read_text())
    slug = f"openai-{uuid.uuid4().hex[:6]}"
    chosen = admin.admin.providers.create(slug=slug, name="OpenAI", kind="openai")
    name = next(
        k
        for k, v in catalog.items()
        if isinstance(v, dict) and v.get("litellm_provider") == "openai" and v.get("mode") == "chat"
    )
    row = admin.admin.models.create(
        slug=f"imp-{uuid.uuid4().hex[:6]}",
        provider_id=chosen.id,
        upstream_model=name,
        input_price_per_mtok="99",
        output_price_per_mtok="99",
        max_output_tokens=100,
    )
    dry = admin.admin.models.import_prices(catalog, provider=slug, dry_run=True)
    assert dry.dry_run is True and dry.applied is False and dry.provider == slug
    assert row.id in {u["id"] for u in dry.updated}
    assert admin.admin.models.retrieve(row.id).input_price_per_mtok == 99
    applied = admin.admin.models.import_prices(catalog, provider=slug)
    assert applied.applied is True
    assert admin.admin.models.retrieve(row.id).input_price_per_mtok != 99
    with pytest.raises(InvalidRequestError) as caught:
        admin.admin.models.import_prices(catalog, provider="no-such-provider")
    assert caught.value.param == "provider"
