"""The client itself: configuration from arguments and the environment, exact decimals both ways, ``.openai()`` on
the same deployment and key, self-service and threads (SPEC §6, §16.4, §18)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import pytest

from conftest import Tenant, end_user_client
from tollway_sdk import NOT_GIVEN, ObjectNotFoundError, Tollway, TollwayError, __version__
from tollway_sdk._json import dumps, loads
from tollway_sdk._retries import parse_retry_after
from tollway_sdk.types import Budget, Thread


def test_json_numbers_are_decimals_read_from_their_text() -> None:
    decoded = loads(b'{"a": 0.1, "b": 123456789.123456789, "c": 5, "d": 1e-9, "e": [0.30000000000000004]}')
    assert decoded == {
        "a": Decimal("0.1"),
        "b": Decimal("123456789.123456789"),
        "c": 5,
        "d": Decimal("1E-9"),
        "e": [Decimal("0.30000000000000004")],
    }
    assert isinstance(decoded["c"], int)
    assert dumps({"x": Decimal("1E-9"), "y": Decimal("100.50"), "z": [1, "s", None, True]}) == (
        b'{"x":0.000000001,"y":100.50,"z":[1,"s",null,true]}'
    )
    with pytest.raises(ValueError, match="finite"):
        dumps({"x": Decimal("NaN")})


def test_amounts_beyond_float_precision_survive_the_round_trip(admin: Tollway, tenant: Tenant) -> None:
    amount = Decimal("123456789.123456789")  # 18 significant digits: a float keeps about 16
    assert float(amount) != amount
    topup = admin.admin.platforms.topup_wallet(tenant.platform_id, amount_usd=amount)
    assert topup.transaction.amount_usd == amount
    assert topup.wallet.balance_usd == Decimal("123456799.123456789")
    assert tenant.client.platform.wallet.retrieve().balance_usd == Decimal("123456799.123456789")


def test_configuration_from_the_environment(monkeypatch: pytest.MonkeyPatch, gateway_url: str, tenant: Tenant) -> None:
    monkeypatch.setenv("TOLLWAY_BASE_URL", gateway_url + "/v1/")
    monkeypatch.setenv("TOLLWAY_API_KEY", tenant.platform_key)
    monkeypatch.setenv("TOLLWAY_PLATFORM_ID", tenant.platform_id)
    with Tollway() as client:
        assert str(client.base_url) == gateway_url + "/"
        assert client.platform.retrieve().id == tenant.platform_id
    monkeypatch.delenv("TOLLWAY_API_KEY")
    with pytest.raises(TollwayError, match="TOLLWAY_API_KEY"):
        Tollway()
    with pytest.raises(ValueError, match="max_retries"):
        Tollway(api_key="k", max_retries=-1)
    assert repr(NOT_GIVEN) == "NOT_GIVEN" and not NOT_GIVEN


def test_requests_identify_the_sdk(tenant: Tenant) -> None:
    headers = tenant.client.default_headers
    assert headers["User-Agent"].startswith(f"tollway-sdk/{__version__} python/")
    assert headers["Authorization"] == f"Bearer {tenant.platform_key}"


def test_openai_client_does_a_chat_completion_on_the_same_deployment(tenant: Tenant, gateway_url: str) -> None:
    with tenant.client.openai() as inference:
        assert str(inference.base_url) == gateway_url + "/v1/"
        assert inference.api_key == tenant.platform_key
        answer = inference.chat.completions.create(model="echo", messages=[{"role": "user", "content": "ping"}])
    assert "ping" in (answer.choices[0].message.content or "")
    logs = list(tenant.client.platform.logs.list(model="echo"))
    assert len(logs) == 1 and logs[0].end_user_id is None and logs[0].charged_usd is None


def test_self_service_budget(tenant: Tenant) -> None:
    end_user_id, user = end_user_client(tenant)
    with pytest.raises(ObjectNotFoundError):
        user.me.budget()
    tenant.client.platform.budgets.create(end_user_id, max_usd="2.5", period="daily")
    mine = user.me.budget()
    assert isinstance(mine, Budget) and mine.max_usd == Decimal("2.5") and mine.period == "daily"
    assert list(user.me.usage()) == []


def test_threads_of_the_caller_and_of_the_platform(tenant: Tenant) -> None:
    end_user_id, user = end_user_client(tenant)
    thread_id = f"t-{uuid.uuid4().hex[:12]}"
    with user.openai() as inference:
        for text in ("first", "second"):
            inference.responses.create(model="echo", input=text, extra_body={"thread_id": thread_id})
    thread = user.threads.retrieve(thread_id)
    assert isinstance(thread, Thread) and thread.response_count == 2 and thread.object == "thread"
    assert [t.id for t in user.threads.list()] == [thread_id]
    items = list(user.threads.list_items(thread_id, limit=1))
    assert len(items) == 4 and items[0]["type"] == "message" and items[0]["role"] == "user"
    listed = list(tenant.client.platform.threads.list(end_user_id=end_user_id))
    assert [(t.id, t.end_user_id) for t in listed] == [(thread_id, end_user_id)]
    assert list(tenant.client.threads.list()) == []  # the platform key's own threads: none
    user.threads.delete(thread_id)
    with pytest.raises(ObjectNotFoundError):
        user.threads.retrieve(thread_id)


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("-5") == 0.0
    seconds = parse_retry_after(format_datetime(later, usegmt=True))
    assert seconds is not None and 25 <= seconds <= 31
    assert parse_retry_after(format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)) == 0.0
    for garbage in (None, "", "soon", "NaN"):
        assert parse_retry_after(garbage) is None
