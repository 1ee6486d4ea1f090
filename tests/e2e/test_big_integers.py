"""Integers beyond 64 bits in a request (valid JSON that strict parsing keeps exact) come back exactly where an
answer echoes them, instead of a 500: found by schemathesis on ``POST /v1/responses``, whose answer, stored copy and
stream events carry the request's tools."""

from __future__ import annotations

import httpx
import orjson

from tests.e2e.conftest import Tenant

BIG = "15904859041765890457600"
BODY = (
    '{"model": "echo", "input": "hi", "tools": [{"type": "function", "name": "f", '
    '"parameters": {"type": "object", "properties": {"n": {"type": "integer", "maximum": ' + BIG + "}}}}]"
)


def _post(client: httpx.Client, body: str) -> httpx.Response:
    return client.post("/v1/responses", content=body.encode(), headers={"content-type": "application/json"})


def test_a_response_echoing_a_huge_integer_is_answered_and_stored_exactly(tenant: Tenant) -> None:
    created = _post(tenant.client, BODY + "}")
    assert created.status_code == 200, created.text
    assert f'"maximum":{BIG}' in created.text
    stored = tenant.client.get(f"/v1/responses/{created.json()['id']}")
    assert stored.status_code == 200, stored.text
    assert f'"maximum":{BIG}' in stored.text


def test_its_stream_carries_the_integer_exactly(tenant: Tenant) -> None:
    with tenant.client.stream(
        "POST",
        "/v1/responses",
        content=(BODY + ', "stream": true}').encode(),
        headers={"content-type": "application/json"},
    ) as streamed:
        assert streamed.status_code == 200
        text = streamed.read().decode()
    events = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
    completed = [orjson.loads(e) for e in events if '"response.completed"' in e]
    assert completed, text[-500:]
    assert f'"maximum":{BIG}' in events[-1]
