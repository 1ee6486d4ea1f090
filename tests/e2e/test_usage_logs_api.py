"""Usage-log reads (SPEC §5.7, §6, §12): every filter of ``GET /v1/platforms/{pid}/logs`` and ``/v1/me/usage``,
pagination, bad parameters as 400 naming the parameter, and the fields an end user may not see."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.seed import Tenant, create_model, create_provider, create_tenant
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

USER = [{"role": "user", "content": "hi"}]


class Seeded:
    def __init__(self, tenant: Tenant, end_user_id: str, end_user_key: str, between: str) -> None:
        self.tenant, self.end_user_id, self.end_user_key, self.between = tenant, end_user_id, end_user_key, between


def _chat(gateway: GatewayServer, key: str, model: str) -> None:
    httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "messages": USER},
        timeout=30,
    )


@pytest.fixture(scope="module")
def seeded(admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread) -> Iterator[Seeded]:
    provider = create_provider(admin, fake_upstream.base_url)
    create_model(admin, provider["id"], "usage", "fake/usage?in=5&out=6")
    create_model(admin, provider["id"], "refused", "fake/error?status=400")
    tenant = create_tenant(admin, gateway.url, provider["id"], provider["slug"])
    created = tenant.client.post(f"/v1/platforms/{tenant.platform_id}/end-users", json={"external_id": "alice"})
    assert created.status_code == 201, created.text
    end_user_id, end_user_key = created.json()["id"], created.json()["api_key"]["raw_key"]
    _chat(gateway, tenant.platform_key, "usage")  # 1: platform key, success
    _chat(gateway, tenant.platform_key, "refused")  # 2: platform key, error
    time.sleep(0.05)
    rows = _wait(tenant, 2)
    between = rows[0]["created_at"]  # the newest so far: later rows are created after it
    time.sleep(0.05)
    _chat(gateway, end_user_key, "usage")  # 3: end user, success
    _chat(gateway, end_user_key, "usage")  # 4: end user, success
    _wait(tenant, 4)
    yield Seeded(tenant, end_user_id, end_user_key, between)
    tenant.client.close()


def _wait(tenant: Tenant, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        rows: list[dict[str, Any]] = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/logs").json()["data"]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def _logs(seeded: Seeded, **params: Any) -> dict[str, Any]:
    response = seeded.tenant.client.get(f"/v1/platforms/{seeded.tenant.platform_id}/logs", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_filters(seeded: Seeded) -> None:
    assert _logs(seeded)["total"] == 4
    assert {r["model"] for r in _logs(seeded, model="refused")["data"]} == {"refused"}
    assert _logs(seeded, model="refused")["total"] == 1
    errors = _logs(seeded, status="error")["data"]
    assert len(errors) == 1 and errors[0]["error_code"] == "upstream_invalid_request" and errors[0]["cost_usd"] == 0
    assert _logs(seeded, status="success")["total"] == 3
    mine = _logs(seeded, end_user_id=seeded.end_user_id)["data"]
    assert len(mine) == 2 and {r["end_user_id"] for r in mine} == {seeded.end_user_id}
    assert _logs(seeded, end_user_id="00000000-0000-4000-8000-000000000000")["total"] == 0
    assert _logs(seeded, request_type="chat.completion")["total"] == 4
    assert _logs(seeded, request_type="image")["total"] == 0
    for kind in ("embedding", "moderation", "messages", "mcp"):  # every §12 request type is a valid filter
        assert _logs(seeded, request_type=kind)["total"] == 0
    for row in _logs(seeded)["data"]:  # chat rows belong to no response, thread or MCP tool
        labels = ("response_id", "iteration", "thread_id", "mcp_app", "mcp_tool", "mcp_free")
        assert {name: row[name] for name in labels} == dict.fromkeys(labels)
    assert _logs(seeded, since=seeded.between)["total"] == 3  # since is inclusive
    assert _logs(seeded, until=seeded.between)["total"] == 1  # until is exclusive


def test_pagination_newest_first(seeded: Seeded) -> None:
    everything = _logs(seeded, limit=100)["data"]
    stamps = [(r["created_at"], r["id"]) for r in everything]
    assert stamps == sorted(stamps, reverse=True)
    pages = [_logs(seeded, limit=3, page=p) for p in (1, 2, 3)]
    assert [len(p["data"]) for p in pages] == [3, 1, 0]
    assert [p["page"] for p in pages] == [1, 2, 3] and {p["limit"] for p in pages} == {3}
    assert [r["id"] for p in pages for r in p["data"]] == [r["id"] for r in everything]


@pytest.mark.parametrize(
    ("param", "value"),
    [("limit", "0"), ("limit", "101"), ("page", "0"), ("since", "yesterday"), ("until", "2026-13-01T00:00:00Z")],
)
def test_bad_parameters_name_the_parameter(seeded: Seeded, param: str, value: str) -> None:
    response = seeded.tenant.client.get(f"/v1/platforms/{seeded.tenant.platform_id}/logs", params={param: value})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_me_usage_shows_only_the_callers_rows_without_cost(gateway: GatewayServer, seeded: Seeded) -> None:
    me = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {seeded.end_user_key}"})
    with me:
        body = me.get("/v1/me/usage").json()
        assert body["total"] == 2
        for row in body["data"]:
            assert row["end_user_id"] == seeded.end_user_id
            for hidden in ("cost_usd", "uncollected_usd", "provider_id", "provider_model"):
                assert hidden not in row
            assert row["charged_usd"] is not None
        assert me.get("/v1/me/usage", params={"model": "refused"}).json()["total"] == 0
        assert me.get("/v1/me/usage", params={"status": "success", "limit": 1}).json()["total"] == 2
        assert me.get("/v1/me/usage", params={"since": seeded.between}).json()["total"] == 2
        assert me.get("/v1/me/usage", params={"until": seeded.between}).json()["total"] == 0
        assert me.get("/v1/me/usage", params={"request_type": "response"}).json()["total"] == 0
        assert me.get("/v1/me/usage", params={"limit": "x"}).json()["error"]["param"] == "limit"
    platform = seeded.tenant.client.get("/v1/me/usage")
    assert platform.status_code == 403 and platform.json()["error"]["code"] == "wrong_key_type"


def test_response_rows_name_their_response_and_turn(
    admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> None:
    provider = create_provider(admin, fake_upstream.base_url)
    create_model(admin, provider["id"], "turns", "fake/usage?in=5&out=6")
    tenant = create_tenant(admin, gateway.url, provider["id"], provider["slug"])
    created = tenant.client.post("/v1/responses", json={"model": "turns", "input": "hi"})
    assert created.status_code == 200, created.text
    [row] = _wait(tenant, 1)
    tenant.client.close()
    assert row["request_type"] == "response"
    assert (row["response_id"], row["iteration"], row["thread_id"]) == (created.json()["id"], 0, None)
    assert (row["mcp_app"], row["mcp_tool"], row["mcp_free"]) == (None, None, None)
