"""The platform API through the SDK (SPEC §5) against a live Tollway: the platform, its keys, LLM configs, end users,
budgets and their ledgers, rate-limit overrides, the wallet and the usage log, with exact amounts and every list
walked across pages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import openai
import pytest

from conftest import Tenant, end_user_client
from tollway_sdk import (
    BudgetExhaustedError,
    InvalidAPIKeyError,
    InvalidRequestError,
    ObjectNotFoundError,
    SyncPage,
    Tollway,
    TollwayError,
    from_openai_error,
)
from tollway_sdk.types import Budget, BudgetChange, CreatedEndUser, EndUser, LLMConfig, Provider, UsageLog

from tests.support.seed import FAKE_PROVIDER_KEY


def test_platform_retrieve_update_delete(tenant: Tenant) -> None:
    platform = tenant.client.platform.retrieve()
    assert platform.id == tenant.platform_id and platform.settings.markup_percentage == 0
    updated = tenant.client.platform.update(
        name="Renamed",
        settings={
            "markup_percentage": Decimal("15"),
            "rate_limits": {"rpm": 60, "tpm": None, "rpd": 1000},
            "wallet_low_balance_threshold": "0.5",
        },
    )
    assert updated.name == "Renamed"
    assert updated.settings.markup_percentage == 15
    assert (updated.settings.rate_limits.rpm, updated.settings.rate_limits.rpd) == (60, 1000)
    assert updated.settings.wallet_low_balance_threshold == Decimal("0.5")
    again = tenant.client.platform.update(settings={"wallet_low_balance_threshold": None})
    assert again.settings.wallet_low_balance_threshold is None and again.settings.markup_percentage == 15
    tenant.client.platform.delete()
    with pytest.raises(InvalidAPIKeyError):
        tenant.client.platform.retrieve()


def test_keys_create_list_revoke(tenant: Tenant, gateway_url: str) -> None:
    key = tenant.client.platform.keys.create(name="ci", scopes=["inference"])
    assert key.type == "platform" and key.scopes == ["inference"] and key.key_prefix == key.raw_key[:12]
    listed = {k.id: k for k in tenant.client.platform.keys.list()}
    assert key.id in listed and not hasattr(listed[key.id], "raw_key")
    end_user_id, _ = end_user_client(tenant)
    eu_keys = list(tenant.client.platform.keys.list(type="end_user", end_user_id=end_user_id))
    assert [k.end_user_id for k in eu_keys] == [end_user_id] and eu_keys[0].type == "end_user"
    tenant.client.platform.keys.revoke(key.id)
    revoked = next(k for k in tenant.client.platform.keys.list() if k.id == key.id)
    assert revoked.revoked_at is not None and revoked.is_active is False
    with Tollway(base_url=gateway_url, api_key=key.raw_key) as client, client.openai(max_retries=0) as inference:
        with pytest.raises(openai.AuthenticationError) as raised:
            inference.models.list()  # inference refuses the revoked key too
        assert isinstance(from_openai_error(raised.value), InvalidAPIKeyError)
    # The SDK's own class for it, on an SDK call.
    with Tollway(base_url=gateway_url, api_key=key.raw_key, platform_id=tenant.platform_id) as client:
        with pytest.raises(InvalidAPIKeyError) as caught:
            client.platform.retrieve()
        assert caught.value.code == "invalid_api_key" and caught.value.type == "authentication_error"


def test_llm_configs_crud(tenant: Tenant, provider: Provider) -> None:
    configs = tenant.client.platform.llm_configs
    created = configs.create(provider_id=provider.id, api_key=FAKE_PROVIDER_KEY, is_default=True)
    assert isinstance(created, LLMConfig)
    assert (created.provider_id, created.provider_slug, created.is_default) == (provider.id, provider.slug, True)
    assert "api_key" not in created.model_dump()
    assert configs.retrieve(created.id) == created
    assert created.id in {c.id for c in configs.list(provider_id=provider.id)}
    rotated = configs.update(created.id, api_key=FAKE_PROVIDER_KEY, is_active=False)
    assert rotated.is_active is False
    configs.delete(created.id)
    with pytest.raises(ObjectNotFoundError):
        configs.retrieve(created.id)


def test_end_users_crud_and_keys(tenant: Tenant) -> None:
    users = tenant.client.platform.end_users
    created = users.create(external_id="user-1842", display_name="Dana", metadata={"plan": "pro"})
    assert isinstance(created, CreatedEndUser) and created.created is True
    assert created.api_key.raw_key.startswith("sk-eu_") and created.budget is None
    again = users.create(external_id="user-1842", display_name="ignored")
    assert again.created is False and again.id == created.id and again.display_name == "Dana"
    assert again.api_key.raw_key != created.api_key.raw_key
    assert [u.id for u in users.list(external_id="user-1842")] == [created.id]
    fetched = users.retrieve(created.id)
    assert isinstance(fetched, EndUser) and fetched.metadata == {"plan": "pro"}
    patched = users.update(created.id, display_name=None, is_active=False)
    assert patched.display_name is None and patched.is_active is False and patched.metadata == {"plan": "pro"}
    key = users.create_api_key(created.id, name="mobile", expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert key.end_user_id == created.id and key.scopes == ["inference"]
    users.delete(created.id)
    with pytest.raises(ObjectNotFoundError):
        users.retrieve(created.id)


def test_budget_lifecycle_with_exact_amounts(tenant: Tenant) -> None:
    end_user_id, _ = end_user_client(tenant)
    budgets = tenant.client.platform.budgets
    created = budgets.create(end_user_id, max_usd="5", period="monthly", low_balance_threshold=Decimal("0.1"))
    assert isinstance(created, Budget)
    assert (created.max_usd, created.used_usd, created.period) == (Decimal(5), Decimal(0), "monthly")
    assert created.next_reset_at is not None and created.next_reset_at.tzinfo is not None
    topped = budgets.topup(end_user_id, amount_usd="0.000000001", reason="goodwill")
    assert isinstance(topped, BudgetChange)
    assert topped.budget.max_usd == Decimal("5.000000001") and topped.transaction.type == "topup"
    debited = budgets.debit(end_user_id, amount_usd=Decimal("0.1"), reason="chargeback", metadata={"case": 7})
    assert debited.budget.used_usd == Decimal("0.1") and debited.budget.remaining_usd == Decimal("4.900000001")
    assert debited.transaction.amount_usd == Decimal("-0.1") and debited.transaction.metadata == {"case": 7}
    with pytest.raises(BudgetExhaustedError) as caught:
        budgets.debit(end_user_id, amount_usd="5", reason="too much")
    assert caught.value.status == 402 and caught.value.type == "billing_error"
    suspended = budgets.update(end_user_id, is_suspended=True, max_usd="6")
    assert suspended.is_suspended is True and suspended.max_usd == 6
    assert budgets.retrieve(end_user_id) == suspended
    with pytest.raises(InvalidRequestError) as refused:
        budgets.update(end_user_id, max_usd="0.01")
    assert refused.value.param == "max_usd"
    kinds = [t.type for t in budgets.list_transactions(end_user_id)]
    assert sorted(kinds[:2]) == ["adjustment", "suspend"]  # one PATCH wrote both, in the same instant
    assert kinds[2:] == ["debit", "topup", "opening_balance"]
    assert [t.type for t in budgets.list_transactions(end_user_id, type="debit")] == ["debit"]
    future = datetime.now(UTC) + timedelta(minutes=5)
    assert list(budgets.list_transactions(end_user_id, since=future)) == []
    with pytest.raises(InvalidRequestError):
        budgets.create(end_user_id, max_usd=1)


def test_rate_limit_overrides(tenant: Tenant) -> None:
    end_user_id, user = end_user_client(tenant)
    limits = tenant.client.platform.rate_limits
    with pytest.raises(ObjectNotFoundError):
        limits.retrieve(end_user_id)
    assert user.me.rate_limits().resolution == "none"
    put = limits.set(end_user_id, rpm_limit=30, rpd_limit=1000)
    assert (put.rpm_limit, put.tpm_limit, put.rpd_limit) == (30, None, 1000)
    assert limits.retrieve(end_user_id) == put
    mine = user.me.rate_limits()
    assert (mine.rpm_limit, mine.rpd_limit, mine.resolution) == (30, 1000, "explicit")
    limits.delete(end_user_id)
    with pytest.raises(ObjectNotFoundError):
        limits.retrieve(end_user_id)


def test_wallet_logs_and_usage_after_inference(tenant: Tenant) -> None:
    tenant.client.platform.update(settings={"markup_percentage": 15})
    end_user_id, user = end_user_client(tenant)
    with user.openai() as inference:
        answer = inference.chat.completions.create(model="cent", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content is not None
    wallet = tenant.client.platform.wallet.retrieve()
    assert wallet.balance_usd == Decimal("9.99") and wallet.held_usd == 0 and wallet.available_usd == Decimal("9.99")
    assert [t.type for t in wallet.recent_transactions] == ["usage", "topup"]
    assert wallet.recent_transactions[0].amount_usd == Decimal("-0.01")
    assert [t.type for t in tenant.client.platform.wallet.list_transactions(type="usage")] == ["usage"]
    logs = list(tenant.client.platform.logs.list(end_user_id=end_user_id, model="cent", status="success"))
    assert len(logs) == 1 and isinstance(logs[0], UsageLog)
    # $0.01 raw cost; charged with the 15 % markup; nothing uncollected
    assert logs[0].cost_usd == Decimal("0.01") and logs[0].charged_usd == Decimal("0.0115")
    assert logs[0].uncollected_usd == 0
    assert logs[0].request_type == "chat.completion" and logs[0].completion_tokens == 10
    assert list(tenant.client.platform.logs.list(model="echo")) == []
    mine = list(user.me.usage())
    assert [row.id for row in mine] == [logs[0].id] and mine[0].charged_usd == Decimal("0.0115")
    assert "cost_usd" not in mine[0].model_dump() and "provider_id" not in mine[0].model_dump()


def test_lists_walk_every_page(tenant: Tenant) -> None:
    ids = [tenant.client.platform.end_users.create(external_id=f"page-{i}").id for i in range(7)]
    first = tenant.client.platform.end_users.list(limit=3)
    assert isinstance(first, SyncPage)
    assert (len(first.data), first.total, first.page, first.limit) == (3, 7, 1, 3)
    assert first.has_next_page()
    pages = list(first.iter_pages())
    assert [len(p.data) for p in pages] == [3, 3, 1] and [p.page for p in pages] == [1, 2, 3]
    assert not pages[-1].has_next_page()
    walked = [u.id for u in tenant.client.platform.end_users.list(limit=3)]
    assert walked == list(reversed(ids))  # newest first, each exactly once
    assert [u.id for u in tenant.client.platform.end_users.list(limit=3, page=3)] == [ids[0]]
    with pytest.raises(InvalidRequestError) as caught:
        tenant.client.platform.end_users.list(limit=101)
    assert caught.value.param == "limit"
    with pytest.raises(RuntimeError):
        pages[-1].next_page()


def test_calls_needing_a_platform_id_say_so(gateway_url: str, tenant: Tenant) -> None:
    with Tollway(base_url=gateway_url, api_key=tenant.platform_key) as client, pytest.raises(TollwayError) as caught:
        client.platform.end_users.create(external_id=uuid.uuid4().hex)
    assert "platform_id" in str(caught.value) and caught.value.status is None
