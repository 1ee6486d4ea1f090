"""Retries and idempotency (SPEC §9.7, §10, §18) through a fault-injecting proxy in front of a live Tollway: 503 and
429 answers are retried after their ``Retry-After``; only idempotent requests and requests carrying an
``Idempotency-Key`` are retried; every money call carries a generated key that its retries reuse, so a top-up whose
answer was lost is credited exactly once."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest

from conftest import Tenant, end_user_client
from fault_proxy import FaultProxy
from tollway_sdk import (
    APIConnectionError,
    IdempotencyKeyMismatchError,
    RateLimitError,
    ServiceUnavailableError,
    Tollway,
)


def _through(proxy: FaultProxy, key: str, platform_id: str | None = None, max_retries: int = 2) -> Tollway:
    return Tollway(base_url=proxy.url, api_key=key, platform_id=platform_id, max_retries=max_retries)


def test_a_503_is_retried_after_its_retry_after(proxy: FaultProxy, tenant: Tenant) -> None:
    proxy.fail("GET", "/wallet", "answer", status=503, retry_after="1")
    with _through(proxy, tenant.platform_key, tenant.platform_id) as client:
        started = time.monotonic()
        wallet = client.platform.wallet.retrieve()
        waited = time.monotonic() - started
    assert wallet.balance_usd == 10
    assert len(proxy.requests_to("GET", "/wallet")) == 2
    assert waited >= 1.0  # Retry-After honoured (plus at most 10 % jitter, and the calls themselves)


def test_a_429_is_retried_and_a_too_long_retry_after_is_not_waited_for(proxy: FaultProxy, tenant: Tenant) -> None:
    proxy.fail("GET", "/end-users", "answer", status=429, code="rate_limit_exceeded", retry_after="1")
    with _through(proxy, tenant.platform_key, tenant.platform_id) as client:
        assert list(client.platform.end_users.list()) == []
        assert len(proxy.requests_to("GET", "/end-users")) == 2
        proxy.fail("GET", "/end-users", "answer", status=429, code="rate_limit_exceeded", retry_after="3600")
        with pytest.raises(RateLimitError) as caught:
            client.platform.end_users.list()
    assert caught.value.code == "rate_limit_exceeded" and caught.value.headers["retry-after"] == "3600"
    assert len(proxy.requests_to("GET", "/end-users")) == 3


def test_retries_give_up_after_max_retries(proxy: FaultProxy, tenant: Tenant) -> None:
    proxy.fail("GET", "/wallet", "answer", status=503, retry_after="0", times=5)
    client = _through(proxy, tenant.platform_key, tenant.platform_id, max_retries=2)
    with client, pytest.raises(ServiceUnavailableError) as caught:
        client.platform.wallet.retrieve()
    assert caught.value.status == 503 and caught.value.request_id == "req_" + "0" * 32
    assert len(proxy.requests_to("GET", "/wallet")) == 3  # the first try and two retries
    proxy.faults.clear()
    with _through(proxy, tenant.platform_key, tenant.platform_id, max_retries=0) as client:
        proxy.fail("GET", "/wallet", "answer", status=503, retry_after="0")
        with pytest.raises(ServiceUnavailableError):
            client.platform.wallet.retrieve()
    assert len(proxy.requests_to("GET", "/wallet")) == 4


def test_a_post_without_an_idempotency_key_is_never_retried(proxy: FaultProxy, tenant: Tenant) -> None:
    proxy.fail("POST", "/end-users", "lose-answer", status=503, retry_after="0")
    client = _through(proxy, tenant.platform_key, tenant.platform_id)
    with client, pytest.raises(ServiceUnavailableError):
        client.platform.end_users.create(external_id="once")
    assert len(proxy.requests_to("POST", "/end-users")) == 1
    proxy.fail("POST", "/api-keys", "drop")
    client = _through(proxy, tenant.platform_key, tenant.platform_id)
    with client, pytest.raises(APIConnectionError):
        client.platform.keys.create(name="never twice")
    assert len(proxy.requests_to("POST", "/api-keys")) == 1


def test_a_wallet_topup_whose_answer_was_lost_is_retried_with_the_same_key_and_credited_once(
    proxy: FaultProxy, tenant: Tenant, admin_key: str
) -> None:
    proxy.fail("POST", "/wallet/topup", "lose-answer", status=503, retry_after="0")
    with _through(proxy, admin_key) as operator:
        topup = operator.admin.platforms.topup_wallet(tenant.platform_id, amount_usd="2.5")
        assert topup.wallet.balance_usd == Decimal("12.5")
        tries = proxy.requests_to("POST", "/wallet/topup")
        assert len(tries) == 2
        key = tries[0].headers["idempotency-key"]
        assert key.startswith("tollway-sdk-") and tries[1].headers["idempotency-key"] == key
        assert operator.admin.platforms.retrieve(tenant.platform_id).wallet.balance_usd == Decimal("12.5")
        ledger = [t.amount_usd for t in tenant.client.platform.wallet.list_transactions(type="topup")]
        assert ledger == [Decimal("2.5"), Decimal("10")]  # credited exactly once
        # A new call gets a new key: the same amount again is a second top-up.
        operator.admin.platforms.topup_wallet(tenant.platform_id, amount_usd="2.5")
        assert proxy.requests_to("POST", "/wallet/topup")[2].headers["idempotency-key"] != key
        assert operator.admin.platforms.retrieve(tenant.platform_id).wallet.balance_usd == 15


def test_a_budget_topup_dropped_after_it_ran_is_retried_and_applied_once(proxy: FaultProxy, tenant: Tenant) -> None:
    end_user_id, _ = end_user_client(tenant)
    tenant.client.platform.budgets.create(end_user_id, max_usd="1")
    proxy.fail("POST", "/budget/topup", "forward-drop")
    proxy.fail("POST", "/budget/debit", "lose-answer", status=429, code="rate_limit_exceeded", retry_after="1")
    with _through(proxy, tenant.platform_key, tenant.platform_id) as client:
        change = client.platform.budgets.topup(end_user_id, amount_usd="0.25", reason="retry me")
        assert change.budget.max_usd == Decimal("1.25")
        debit = client.platform.budgets.debit(end_user_id, amount_usd="0.05", reason="retry me too")
        assert debit.budget.used_usd == Decimal("0.05")
    for suffix in ("/budget/topup", "/budget/debit"):
        tries = proxy.requests_to("POST", suffix)
        assert len(tries) == 2 and tries[0].headers["idempotency-key"] == tries[1].headers["idempotency-key"]
    kinds = [t.type for t in tenant.client.platform.budgets.list_transactions(end_user_id)]
    assert kinds == ["debit", "topup", "opening_balance"]
    assert tenant.client.platform.budgets.retrieve(end_user_id).remaining_usd == Decimal("1.2")


def test_a_keyed_call_still_running_elsewhere_is_retried(proxy: FaultProxy, tenant: Tenant) -> None:
    end_user_id, _ = end_user_client(tenant)
    tenant.client.platform.budgets.create(end_user_id, max_usd="1")
    proxy.fail("PATCH", "/budget", "answer", status=409, code="idempotency_in_progress", retry_after=None)
    with _through(proxy, tenant.platform_key, tenant.platform_id) as client:
        budget = client.platform.budgets.update(end_user_id, max_usd="3", idempotency_key="patch-1")
    assert budget.max_usd == 3
    assert [s.headers["idempotency-key"] for s in proxy.requests_to("PATCH", "/budget")] == ["patch-1", "patch-1"]


def test_callers_keys_are_sent_and_a_reused_key_with_another_body_is_refused(tenant: Tenant) -> None:
    end_user_id, _ = end_user_client(tenant)
    budgets = tenant.client.platform.budgets
    budgets.create(end_user_id, max_usd="1")
    key = f"order-{uuid.uuid4()}"
    first = budgets.topup(end_user_id, amount_usd="1", idempotency_key=key)
    replay = budgets.topup(end_user_id, amount_usd="1", idempotency_key=key)
    assert replay == first and budgets.retrieve(end_user_id).max_usd == 2
    with pytest.raises(IdempotencyKeyMismatchError) as caught:
        budgets.topup(end_user_id, amount_usd="2", idempotency_key=key)
    assert caught.value.status == 422 and caught.value.param == "Idempotency-Key"
    assert budgets.retrieve(end_user_id).max_usd == 2


def test_connection_errors_on_reads_are_retried(proxy: FaultProxy, tenant: Tenant) -> None:
    proxy.fail("GET", "/logs", "drop")
    with _through(proxy, tenant.platform_key, tenant.platform_id) as client:
        assert list(client.platform.logs.list()) == []
    assert len(proxy.requests_to("GET", "/logs")) == 2
