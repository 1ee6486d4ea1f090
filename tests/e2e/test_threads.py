"""Agent threads end to end (SPEC §16.4) with the official openai SDK, on SQLite and PostgreSQL: the thread's context
really sent upstream (natively and over chat), ``conversation`` as the SDK sends it, the thread routes (list, get,
items in order and paginated, delete), 409 ``thread_busy`` under real concurrency, streams, usage rows carrying
``thread_id``, and tenancy across two platforms and two end users."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.support.seed import Tenant, create_model, create_provider, create_tenant, logs_for
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread

KINDS = {"openai": "openai", "openai_compatible": "openai"}  # provider kind -> fake dialect
MODELS = {
    "echo": "fake/echo",
    "slow": "fake/echo?ms=3000",  # long enough for every racer to arrive while the first one runs, under load
    "slow-stream": "fake/echo?delay_ms=400",
    "mid-error": "fake/stream-error?after=2",
    "broken": "fake/error?status=500",
    "usage": "fake/usage?in=5&out=6",
    "tool": 'fake/tool-call?name=get_weather&args={"city":"Paris"}',
}
TOOLS: Any = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
UPSTREAM_PATHS = {"openai": "/v1/responses", "openai_compatible": "/v1/chat/completions"}


class Stack:
    def __init__(self, kind: str, tenant: Tenant, sdk: openai.OpenAI) -> None:
        self.kind, self.tenant, self.sdk = kind, tenant, sdk


@pytest.fixture(scope="module")
def stacks(
    admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> Iterator[dict[str, Stack]]:
    built: dict[str, Stack] = {}
    for kind, dialect in KINDS.items():
        provider = create_provider(admin, fake_upstream.dialect_base_url(dialect), kind=kind)
        for slug, upstream in MODELS.items():
            create_model(admin, provider["id"], slug, upstream)
        tenant = create_tenant(admin, gateway.url, provider["id"], provider["slug"])
        sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=tenant.platform_key, max_retries=0, timeout=30)
        built[kind] = Stack(kind, tenant, sdk)
    yield built
    for stack in built.values():
        stack.sdk.close()
        stack.tenant.client.close()


@pytest.fixture(params=list(KINDS))
def stack(request: pytest.FixtureRequest, stacks: dict[str, Stack]) -> Stack:
    return stacks[request.param]


@pytest.fixture
def native(stacks: dict[str, Stack]) -> Stack:
    return stacks["openai"]


def _thread() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


def _raw(gateway: GatewayServer, key: str, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.request(method, gateway.url + path, json=body, params=params, headers=headers, timeout=30)


def _upstream_with(fake: FakeUpstreamThread, path: str, marker: str) -> dict[str, Any]:
    """The last upstream request to ``path`` whose body mentions ``marker``."""
    found = [r.body for r in fake.requests if r.path == path and marker in str(r.body)]
    assert found, f"no upstream request to {path} mentions {marker}"
    body: dict[str, Any] = found[-1]
    return body


def _texts(upstream: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    """(role, text) of every message the upstream received, whatever its dialect."""
    messages = upstream["input"] if kind == "openai" else upstream["messages"]
    out = []
    for message in messages:
        content = message["content"]
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
        out.append((message["role"], text))
    return out


def _user(gateway: GatewayServer, tenant: Tenant, external_id: str) -> tuple[str, str]:
    created = tenant.client.post(f"/v1/platforms/{tenant.platform_id}/end-users", json={"external_id": external_id})
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["api_key"]["raw_key"]


# The context of a thread, as sent upstream.


def test_a_thread_carries_its_context_upstream(stack: Stack, fake_upstream: FakeUpstreamThread) -> None:
    thread, mark = _thread(), uuid.uuid4().hex[:8]
    first = stack.sdk.responses.create(
        model="echo", input=f"alpha {mark}", metadata={"topic": "demo"}, extra_body={"thread_id": thread}
    )
    assert first.output_text == f"alpha {mark}" and first.conversation is not None
    assert first.conversation.id == thread and first.model_extra is not None
    assert first.model_extra["thread_id"] == thread
    # the SDK's own ``conversation`` parameter is the alias
    second = stack.sdk.responses.create(model="echo", input=f"beta {mark}", conversation=thread, instructions="Hi.")
    assert second.output_text == f"beta {mark}" and second.previous_response_id is None
    upstream = _upstream_with(fake_upstream, UPSTREAM_PATHS[stack.kind], f"beta {mark}")
    expected = [("user", f"alpha {mark}"), ("assistant", f"alpha {mark}"), ("user", f"beta {mark}")]
    if stack.kind == "openai":
        assert _texts(upstream, stack.kind) == expected and upstream["instructions"] == "Hi."
        assert "conversation" not in upstream and "thread_id" not in upstream and upstream["store"] is False
    else:
        assert _texts(upstream, stack.kind) == [("system", "Hi."), *expected]
    third = stack.sdk.responses.create(model="echo", input=f"gamma {mark}", conversation={"id": thread})
    upstream = _upstream_with(fake_upstream, UPSTREAM_PATHS[stack.kind], f"gamma {mark}")
    assert [text for _, text in _texts(upstream, stack.kind)][-5:] == [
        f"alpha {mark}",
        f"alpha {mark}",
        f"beta {mark}",
        f"beta {mark}",
        f"gamma {mark}",
    ]
    got = stack.tenant.client.get(f"/v1/threads/{thread}").json()
    assert (got["id"], got["object"], got["response_count"], got["metadata"]) == (
        thread,
        "thread",
        3,
        {"topic": "demo"},
    )
    assert got["created_at"].endswith("Z") and got["updated_at"] >= got["created_at"]
    # each turn is stored with its own input only: the thread holds the rest
    assert stack.sdk.responses.retrieve(third.id).output_text == f"gamma {mark}"


def test_items_in_order_and_paginated(native: Stack) -> None:
    thread = _thread()
    answers = [
        native.sdk.responses.create(model="echo", input=f"m{i}", extra_body={"thread_id": thread}) for i in range(3)
    ]
    items = native.tenant.client.get(f"/v1/threads/{thread}/items", params={"limit": 100}).json()
    assert (items["total"], items["page"], items["limit"]) == (6, 1, 100)
    data = items["data"]
    assert [d["type"] for d in data] == ["message"] * 6
    assert [d["role"] for d in data] == ["user", "assistant"] * 3
    assert [d["content"] for d in data[::2]] == ["m0", "m1", "m2"]
    assert [d["id"] for d in data[1::2]] == [a.output[0].id for a in answers]
    assert [d["content"][0]["text"] for d in data[1::2]] == ["m0", "m1", "m2"]
    page = native.tenant.client.get(f"/v1/threads/{thread}/items", params={"limit": 4, "page": 2}).json()
    assert (page["total"], page["page"], page["limit"], page["data"]) == (6, 2, 4, data[4:])
    past = native.tenant.client.get(f"/v1/threads/{thread}/items", params={"page": 9}).json()
    assert (past["total"], past["data"]) == (6, [])
    bad = native.tenant.client.get(f"/v1/threads/{thread}/items", params={"limit": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


def test_list_get_and_delete(native: Stack, gateway: GatewayServer, fake_upstream: FakeUpstreamThread) -> None:
    user_id, key = _user(gateway, native.tenant, f"lister-{uuid.uuid4().hex[:6]}")
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30)
    made = [_thread() for _ in range(3)]
    responses = {}
    for thread in made:
        responses[thread] = sdk.responses.create(model="echo", input="x", extra_body={"thread_id": thread})
        time.sleep(0.01)  # distinct created_at: newest first
    listed = _raw(gateway, key, "GET", "/v1/threads").json()
    assert [t["id"] for t in listed["data"]] == made[::-1] and listed["total"] == 3
    assert {t["response_count"] for t in listed["data"]} == {1}
    page = _raw(gateway, key, "GET", "/v1/threads", limit=2, page=2).json()
    assert ([t["id"] for t in page["data"]], page["total"]) == ([made[0]], 3)
    gone = made[1]
    deleted = _raw(gateway, key, "DELETE", f"/v1/threads/{gone}")
    assert deleted.status_code == 204 and deleted.content == b""
    for path in (f"/v1/threads/{gone}", f"/v1/threads/{gone}/items", f"/v1/responses/{responses[gone].id}"):
        missing = _raw(gateway, key, "GET", path)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found", path
    assert _raw(gateway, key, "DELETE", f"/v1/threads/{gone}").status_code == 404
    assert [t["id"] for t in _raw(gateway, key, "GET", "/v1/threads").json()["data"]] == [made[2], made[0]]
    # the id reused later starts a new thread: nothing of the deleted one in its context
    mark = uuid.uuid4().hex[:8]
    sdk.responses.create(model="echo", input=f"fresh {mark}", extra_body={"thread_id": gone})
    upstream = _upstream_with(fake_upstream, "/v1/responses", f"fresh {mark}")
    assert _texts(upstream, "openai") == [("user", f"fresh {mark}")]
    assert _raw(gateway, key, "GET", f"/v1/threads/{gone}").json()["response_count"] == 1
    # the platform's list names the owner; end_user_id filters
    base = f"/v1/platforms/{native.tenant.platform_id}/threads"
    mine = native.tenant.client.get(base, params={"end_user_id": user_id, "limit": 100}).json()
    assert {t["id"] for t in mine["data"]} == set(made) and {t["end_user_id"] for t in mine["data"]} == {user_id}
    for path in ("/v1/threads/has.dot", "/v1/threads/" + "x" * 65):
        assert _raw(gateway, key, "GET", path).status_code == 404
    sdk.close()


# Streams.


def test_a_stream_appends_when_complete_and_a_failed_one_does_not(stack: Stack) -> None:
    thread = _thread()
    with stack.sdk.responses.stream(model="echo", input="streamed", extra_body={"thread_id": thread}) as stream:
        list(stream)
        final = stream.get_final_response()
    assert final.conversation is not None and final.conversation.id == thread
    failed = list(stack.sdk.responses.create(model="mid-error", input="a b c d", stream=True, conversation=thread))
    assert failed[-1].type == "response.failed"
    got = stack.tenant.client.get(f"/v1/threads/{thread}").json()
    assert got["response_count"] == 1
    items = stack.tenant.client.get(f"/v1/threads/{thread}/items").json()["data"]
    assert [i["type"] for i in items] == ["message", "message"] and items[1]["id"] == final.output[0].id
    # the thread is free again at once after a completed and after a failed stream
    assert stack.sdk.responses.create(model="echo", input="after", conversation=thread).output_text == "after"


def test_a_stream_cut_by_its_client_frees_the_thread(native: Stack, gateway: GatewayServer) -> None:
    thread = _thread()
    words = " ".join(f"w{i}" for i in range(15))  # 15 events 400 ms apart: still running when it is cut
    body = {"model": "slow-stream", "input": words, "stream": True, "thread_id": thread}
    headers = {"Authorization": f"Bearer {native.tenant.platform_key}"}
    with httpx.stream("POST", gateway.url + "/v1/responses", json=body, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines).startswith("event: response.created")
        busy = _raw(gateway, native.tenant.platform_key, "POST", "/v1/responses", {**body, "stream": False})
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "thread_busy"
    deadline = time.monotonic() + 15
    while True:  # the client left: the relay's ``finally`` releases the thread
        retry = _raw(
            gateway, native.tenant.platform_key, "POST", "/v1/responses", {**body, "model": "echo", "stream": False}
        )
        if retry.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert retry.status_code == 200, retry.text
    # the interrupted response was not appended: the thread holds the later one only
    items = native.tenant.client.get(f"/v1/threads/{thread}/items").json()
    assert items["total"] == 2 and items["data"][1]["id"] == retry.json()["output"][0]["id"]


# Serialisation.


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_one_of_concurrent_requests_wins_the_others_are_busy(
    native: Stack, gateway: GatewayServer, stream: bool
) -> None:
    thread, start = _thread(), threading.Barrier(6)
    body = {"model": "slow", "input": "race", "thread_id": thread, "stream": stream}

    def post(_: int) -> tuple[int, dict[str, Any] | None]:
        start.wait()
        response = _raw(gateway, native.tenant.platform_key, "POST", "/v1/responses", body)
        return response.status_code, response.json() if response.status_code != 200 else None

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(post, range(6)))
    assert sorted(status for status, _ in outcomes) == [200] + [409] * 5
    for status, error in outcomes:
        if status == 409:
            assert error is not None
            assert error["error"]["code"] == "thread_busy" and error["error"]["type"] == "invalid_request_error"
    after = native.sdk.responses.create(model="echo", input="next", extra_body={"thread_id": thread})
    assert after.status == "completed"
    assert native.tenant.client.get(f"/v1/threads/{thread}").json()["response_count"] == 2


def test_a_failed_first_request_leaves_no_thread(native: Stack) -> None:
    thread = _thread()
    with pytest.raises(openai.InternalServerError):
        native.sdk.responses.create(model="broken", input="x", extra_body={"thread_id": thread})
    assert native.tenant.client.get(f"/v1/threads/{thread}").status_code == 404
    with pytest.raises(openai.NotFoundError):
        native.sdk.responses.create(model="no-such-model", input="x", extra_body={"thread_id": thread})
    assert native.sdk.responses.create(model="echo", input="x", extra_body={"thread_id": thread}).status == "completed"
    with pytest.raises(openai.InternalServerError):  # a later failure leaves the thread as it was, and free
        native.sdk.responses.create(model="broken", input="y", extra_body={"thread_id": thread})
    assert native.tenant.client.get(f"/v1/threads/{thread}").json()["response_count"] == 1


def test_a_function_call_is_answered_on_the_thread(stack: Stack, fake_upstream: FakeUpstreamThread) -> None:
    thread = _thread()
    asked = stack.sdk.responses.create(model="tool", input="Weather?", tools=TOOLS, extra_body={"thread_id": thread})
    call = asked.output[-1]
    assert call.type == "function_call"
    unknown = {"type": "function_call_output", "call_id": "call_unknown", "output": "?"}
    with pytest.raises(openai.BadRequestError) as refused:
        stack.sdk.responses.create(model="echo", input=[unknown], conversation=thread)
    assert refused.value.body is not None and refused.value.body["param"] == "input[0].call_id"  # type: ignore[index]
    answer = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    done = stack.sdk.responses.create(model="echo", input=[answer], tools=TOOLS, conversation=thread)
    assert done.status == "completed"  # the refused request freed the thread and left nothing in it
    assert stack.tenant.client.get(f"/v1/threads/{thread}").json()["response_count"] == 2
    if stack.kind == "openai_compatible":
        upstream = _upstream_with(fake_upstream, "/v1/chat/completions", call.call_id)
        roles = [m["role"] for m in upstream["messages"]]
        assert roles == ["user", "assistant", "tool"] and upstream["messages"][1]["tool_calls"][0]["id"] == call.call_id


# Usage rows, previous_response_id, validation.


def test_usage_rows_carry_the_thread(native: Stack) -> None:
    thread = _thread()
    raw = native.sdk.responses.with_raw_response.create(model="usage", input="x", extra_body={"thread_id": thread})
    (row,) = logs_for(native.tenant, raw.headers["x-request-id"])
    assert (row["thread_id"], row["response_id"], row["iteration"]) == (thread, raw.parse().id, 0)
    assert (row["request_type"], row["prompt_tokens"], row["completion_tokens"], row["cost_usd"]) == (
        "response",
        5,
        6,
        0.0000043500,  # 5 x $0.15 + 6 x $0.60 per Mtok
    )
    plain = native.sdk.responses.with_raw_response.create(model="usage", input="x")
    (row,) = logs_for(native.tenant, plain.headers["x-request-id"])
    assert row["thread_id"] is None


def test_previous_response_id_on_a_thread_response_continues_its_context(
    native: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    thread, mark = _thread(), uuid.uuid4().hex[:8]
    native.sdk.responses.create(model="echo", input=f"one {mark}", extra_body={"thread_id": thread})
    second = native.sdk.responses.create(model="echo", input=f"two {mark}", extra_body={"thread_id": thread})
    native.sdk.responses.create(model="echo", input=f"branch {mark}", previous_response_id=second.id)
    upstream = _upstream_with(fake_upstream, "/v1/responses", f"branch {mark}")
    texts = [text for _, text in _texts(upstream, "openai")]
    assert texts == [f"one {mark}", f"one {mark}", f"two {mark}", f"two {mark}", f"branch {mark}"]
    # the branch is not part of the thread
    assert native.tenant.client.get(f"/v1/threads/{thread}").json()["response_count"] == 2


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"thread_id": "bad id"}, "thread_id"),
        ({"thread_id": "t1", "previous_response_id": "resp_x"}, "previous_response_id"),
        ({"thread_id": "t1", "store": False}, "store"),
        ({"conversation": 5}, "conversation"),
        ({"conversation": {"id": "bad id"}}, "conversation.id"),
        ({"thread_id": "t1", "conversation": "t2"}, "conversation"),
    ],
)
def test_bad_thread_fields_are_400_naming_the_field(
    native: Stack, gateway: GatewayServer, fields: dict[str, Any], param: str
) -> None:
    body = {"model": "echo", "input": "x", **fields}
    response = _raw(gateway, native.tenant.platform_key, "POST", "/v1/responses", body)
    assert response.status_code == 400, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == ("invalid_request", param)


# Tenancy.


def test_threads_belong_to_their_owner(
    native: Stack, admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> None:
    other = create_tenant(admin, gateway.url, native.tenant.provider_id, native.tenant.provider_slug)
    suffix = uuid.uuid4().hex[:6]
    _, first_user = _user(gateway, native.tenant, f"eu1-{suffix}")
    _, second_user = _user(gateway, native.tenant, f"eu2-{suffix}")
    owners = {
        "platform": native.tenant.platform_key,
        "other-platform": other.platform_key,
        "user-1": first_user,
        "user-2": second_user,
    }
    thread = _thread()
    for name, key in owners.items():  # the same id: four different threads, none sees another's context
        body = {"model": "echo", "input": f"{name} {thread}", "thread_id": thread}
        created = _raw(gateway, key, "POST", "/v1/responses", body)
        assert created.status_code == 200, created.text
        upstream = _upstream_with(fake_upstream, "/v1/responses", f"{name} {thread}")
        assert _texts(upstream, "openai") == [("user", f"{name} {thread}")]
    for name, key in owners.items():
        got = _raw(gateway, key, "GET", f"/v1/threads/{thread}").json()
        assert got["response_count"] == 1, name
        items = _raw(gateway, key, "GET", f"/v1/threads/{thread}/items").json()["data"]
        assert items[0]["content"] == f"{name} {thread}"
    lonely = _thread()
    assert _raw(gateway, first_user, "POST", "/v1/responses", {"model": "echo", "input": "x", "thread_id": lonely})
    for name in ("platform", "other-platform", "user-2"):
        key = owners[name]
        for method, path in (("GET", ""), ("GET", "/items"), ("DELETE", "")):
            response = _raw(gateway, key, method, f"/v1/threads/{lonely}{path}")
            assert response.status_code == 404, (name, method, path)
        assert lonely not in {t["id"] for t in _raw(gateway, key, "GET", "/v1/threads", limit=100).json()["data"]}
    assert _raw(gateway, first_user, "GET", f"/v1/threads/{lonely}").status_code == 200
    # the platform's list: its own platform's threads only; another platform's key gets 404
    base = f"/v1/platforms/{native.tenant.platform_id}/threads"
    listed = native.tenant.client.get(base, params={"limit": 100}).json()["data"]
    assert sum(1 for t in listed if t["id"] == thread) == 3 and any(t["id"] == lonely for t in listed)
    assert other.client.get(base).status_code == 404
    foreign = other.client.get(
        f"/v1/platforms/{other.platform_id}/threads", params={"end_user_id": str(uuid.uuid4())}
    ).json()
    assert foreign["data"] == [] and foreign["total"] == 0
    assert _raw(gateway, first_user, "GET", base).status_code == 403
    other.client.close()
