"""``AsyncTollway`` has the sync client's surface and behaviour: every area of the API, ``await`` for a first page
and ``async for`` over every item, the same exceptions, retries reusing the money call's ``Idempotency-Key``, and
``.openai()`` returning ``openai.AsyncOpenAI``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import openai
import pytest

from conftest import Tenant
from fault_proxy import FaultProxy
from tollway_sdk import AsyncPage, AsyncTollway, BudgetExhaustedError, InvalidRequestError, ObjectNotFoundError
from tollway_sdk.types import Provider

from tests.support.seed import FAKE_PROVIDER_KEY


async def test_operator_api(gateway_url: str, admin_key: str, provider: Provider) -> None:
    async with AsyncTollway(base_url=gateway_url, api_key=admin_key) as admin:
        slug = f"ap-{uuid.uuid4().hex[:8]}"
        created = await admin.admin.providers.create(slug=slug, name="A", kind="anthropic")
        assert (await admin.admin.providers.retrieve(created.id)).slug == slug
        assert created.id in [p.id async for p in admin.admin.providers.list(kind="anthropic", limit=2)]
        assert (await admin.admin.providers.update(created.id, name="B")).name == "B"
        row = await admin.admin.models.create(
            slug=f"am-{uuid.uuid4().hex[:6]}",
            provider_id=created.id,
            upstream_model="claude",
            input_price_per_mtok="3",
            output_price_per_mtok=Decimal("15.000000001"),
            max_output_tokens=100,
        )
        assert (await admin.admin.models.retrieve(row.id)).output_price_per_mtok == Decimal("15.000000001")
        assert [m.id async for m in admin.admin.models.list(provider_id=created.id)] == [row.id]
        assert (await admin.admin.models.update(row.id, priority=1)).priority == 1
        dry = await admin.admin.models.import_prices({}, dry_run=True)
        assert dry.dry_run is True and dry.updated == []
        await admin.admin.models.delete(row.id)
        await admin.admin.providers.delete(created.id)
        platform = await admin.admin.platforms.create(name="Async Acme")
        pid = platform.platform.id
        assert (await admin.admin.platforms.retrieve(pid)).wallet.balance_usd == 0
        assert pid in [p.id async for p in admin.admin.platforms.list(limit=100)]
        key = await admin.admin.platforms.create_api_key(pid, expires_at=datetime.now(UTC) + timedelta(hours=1))
        assert key.raw_key.startswith("sk-plat_")
        topup = await admin.admin.platforms.topup_wallet(pid, amount_usd="0.3", idempotency_key="async-topup")
        assert topup.wallet.balance_usd == Decimal("0.3")
        assert (await admin.admin.reconcile()).ok is True


async def test_platform_api_and_pagination(async_tenant: AsyncTollway, provider: Provider) -> None:
    client = async_tenant
    platform = await client.platform.update(settings={"markup_percentage": 10})
    assert platform.settings.markup_percentage == 10 and (await client.platform.retrieve()).id == platform.id
    ids = [(await client.platform.end_users.create(external_id=f"a-{i}")).id for i in range(5)]
    first = await client.platform.end_users.list(limit=2)
    assert isinstance(first, AsyncPage) and (len(first.data), first.total) == (2, 5)
    assert [p.page async for p in first.iter_pages()] == [1, 2, 3]
    assert [u.id async for u in client.platform.end_users.list(limit=2)] == list(reversed(ids))
    user = ids[0]
    assert (await client.platform.end_users.retrieve(user)).external_id == "a-0"
    assert (await client.platform.end_users.update(user, metadata={"k": 1})).metadata == {"k": 1}
    assert (await client.platform.end_users.create_api_key(user)).end_user_id == user
    await client.platform.budgets.create(user, max_usd="1")
    change = await client.platform.budgets.topup(user, amount_usd="0.1")
    assert change.budget.max_usd == Decimal("1.1")
    with pytest.raises(BudgetExhaustedError):
        await client.platform.budgets.debit(user, amount_usd="2", reason="over")
    assert (await client.platform.budgets.debit(user, amount_usd="0.1", reason="ok")).budget.used_usd == Decimal("0.1")
    patched = await client.platform.budgets.update(user, low_balance_threshold="0.2")
    assert patched.low_balance_threshold == Decimal("0.2")
    assert (await client.platform.budgets.retrieve(user)).remaining_usd == 1
    assert [t.type async for t in client.platform.budgets.list_transactions(user)][-1] == "opening_balance"
    assert (await client.platform.rate_limits.set(user, tpm_limit=1000)).tpm_limit == 1000
    assert (await client.platform.rate_limits.retrieve(user)).tpm_limit == 1000
    await client.platform.rate_limits.delete(user)
    key = await client.platform.keys.create(name="async")
    assert key.id in [k.id async for k in client.platform.keys.list()]
    await client.platform.keys.revoke(key.id)
    config = await client.platform.llm_configs.create(provider_id=provider.id, api_key=FAKE_PROVIDER_KEY)
    assert (await client.platform.llm_configs.retrieve(config.id)).id == config.id
    assert (await client.platform.llm_configs.update(config.id, is_default=True)).is_default is True
    assert config.id in [c.id async for c in client.platform.llm_configs.list()]
    await client.platform.llm_configs.delete(config.id)
    wallet = await client.platform.wallet.retrieve()
    assert wallet.balance_usd == 10
    session = await client.platform.wallet.create_checkout(amount_usd=Decimal("5"))
    assert session.session_id and session.checkout_url
    assert [t.type async for t in client.platform.wallet.list_transactions()] == ["topup"]
    assert [row async for row in client.platform.logs.list()] == []
    assert [t async for t in client.platform.threads.list()] == []
    await client.platform.end_users.delete(user)
    with pytest.raises(ObjectNotFoundError):
        await client.platform.end_users.retrieve(user)


async def test_webhooks_mcp_and_self_service(async_tenant: AsyncTollway) -> None:
    client = async_tenant
    hook = await client.platform.webhooks.create(url="http://127.0.0.1:9/hook")
    assert (await client.platform.webhooks.retrieve(hook.id)).url == "http://127.0.0.1:9/hook"
    assert (await client.platform.webhooks.update(hook.id, is_active=False)).is_active is False
    assert [h.id async for h in client.platform.webhooks.list()] == [hook.id]
    assert (await client.platform.webhooks.rotate_secret(hook.id)).secret.startswith("whsec_")
    assert [d async for d in client.platform.webhooks.list_deliveries(hook.id)] == []
    with pytest.raises(ObjectNotFoundError):
        await client.platform.webhooks.replay_delivery(hook.id, str(uuid.uuid4()))
    await client.platform.webhooks.delete(hook.id)
    app = await client.platform.mcp_apps.create(
        slug="files",
        name="Files",
        server_url="http://127.0.0.1:9/mcp",
        auth={"type": "header", "name": "X-Key", "value": "v"},
    )
    assert app.auth.type == "header" and app.price_per_call_usd == Decimal("0.001")
    assert (await client.platform.mcp_apps.retrieve(app.id)).has_secret is True
    assert (await client.platform.mcp_apps.update(app.id, price_per_call_usd=0)).price_per_call_usd == 0
    assert [a.id async for a in client.platform.mcp_apps.list()] == [app.id]
    assert [c async for c in client.platform.mcp_apps.list_connections()] == []
    created = await client.platform.end_users.create(external_id="self")
    async with client.with_options(api_key=created.api_key.raw_key) as user:
        config = await user.me.mcp.config()
        assert [(a.slug, a.auth) for a in config.apps] == [("files", "header")]
        with pytest.raises(InvalidRequestError):
            await user.me.mcp.connect("files")  # only OAuth apps are connected
        with pytest.raises(ObjectNotFoundError):
            await user.me.mcp.disconnect("files")
        with pytest.raises(ObjectNotFoundError):
            await user.me.budget()
        assert (await user.me.rate_limits()).resolution == "none"
        async with user.openai() as inference:
            assert isinstance(inference, openai.AsyncOpenAI)
            answer = await inference.responses.create(model="echo", input="hi", extra_body={"thread_id": "async-t"})
            assert answer.output_text
        assert [row.request_type async for row in user.me.usage()] == ["response"]
        assert (await user.threads.retrieve("async-t")).response_count == 1
        assert [t.id async for t in user.threads.list()] == ["async-t"]
        assert len([i async for i in user.threads.list_items("async-t")]) == 2
        await user.threads.delete("async-t")
    await client.platform.mcp_apps.delete(app.id)


async def test_retries_reuse_the_idempotency_key(proxy: FaultProxy, tenant: Tenant, admin_key: str) -> None:
    proxy.fail("POST", "/wallet/topup", "lose-answer", status=503, retry_after="1")
    async with AsyncTollway(base_url=proxy.url, api_key=admin_key) as operator:
        topup = await operator.admin.platforms.topup_wallet(tenant.platform_id, amount_usd="1.5")
        assert topup.wallet.balance_usd == Decimal("11.5")
        assert (await operator.admin.platforms.retrieve(tenant.platform_id)).wallet.balance_usd == Decimal("11.5")
    tries = proxy.requests_to("POST", "/wallet/topup")
    assert len(tries) == 2 and tries[0].headers["idempotency-key"] == tries[1].headers["idempotency-key"]
    proxy.fail("GET", "/wallet", "drop")
    async with AsyncTollway(base_url=proxy.url, api_key=tenant.platform_key, platform_id=tenant.platform_id) as c:
        assert (await c.platform.wallet.retrieve()).balance_usd == Decimal("11.5")
        await c.platform.delete()
    assert len(proxy.requests_to("GET", "/wallet")) == 2
