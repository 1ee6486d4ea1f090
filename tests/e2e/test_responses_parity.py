"""Parity with OpenAI's Responses API (SPEC §7.6, the parity bullet) over every provider kind, with the official
openai SDK as the client: the fields OpenAI defines are forwarded to openai providers as sent and translated,
ignored or refused over chat; reasoning and hosted-tool items are passed through and round-trip through stored
responses; reasoning summaries come from the reasoning content of chat-served answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.providers_conftest import ROWS, THOUGHT, Stack, build_stack, session_id
from tests.support.seed import create_model, logs_for
from tests.support.servers import GatewayServer
from tollway.fake_upstream.gemini import THOUGHT_SIGNATURE
from tollway.fake_upstream.openai_responses import ENCRYPTED_REASONING
from tollway.fake_upstream.server import FakeUpstreamThread

IDS = [row.id for row in ROWS]
HOSTED = f"fake/echo?thought={THOUGHT}&hosted=web_search_call"
TINY_WINDOW = 600  # the §9.3 bound (bytes-based): the system message, the last question and two turns fit
PARITY_KEYS = {"include", "truncation", "prompt_cache_key", "safety_identifier", "service_tier", "max_tool_calls"}


@pytest.fixture(scope="module", params=ROWS, ids=IDS)
def stack(
    request: pytest.FixtureRequest, admin: httpx.Client, gateway: GatewayServer, fake_upstream: FakeUpstreamThread
) -> Iterator[Stack]:
    built = build_stack(admin, gateway.url, fake_upstream, request.param)
    create_model(admin, built.tenant.provider_id, "hosted", HOSTED)
    create_model(admin, built.tenant.provider_id, "tiny", "fake/echo", context_window=TINY_WINDOW)
    yield built
    built.tenant.client.close()


@pytest.fixture
def sdk(gateway: GatewayServer, stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=stack.tenant.platform_key, max_retries=0, timeout=30
    ) as client:
        yield client


def _sent(fake: FakeUpstreamThread) -> dict[str, Any]:
    body: dict[str, Any] = fake.requests[-1].body
    return body


def _native(stack: Stack) -> bool:
    return stack.row.kind == "openai"


def _reasoning(stack: Stack) -> Any:
    # reasoning.effort is ✗ over chat for anthropic, gemini and asi1 (SPEC §7.4): only the summary goes everywhere.
    return {"summary": "auto", **({"effort": "low"} if stack.row.kind in ("openai", "openai_compatible") else {})}


def test_parity_fields_are_accepted_forwarded_or_ignored(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    raw = sdk.responses.with_raw_response.create(
        model="thinker",
        input="Hello, Tollway!",
        include=[],
        reasoning=_reasoning(stack),
        truncation="auto",
        text={"verbosity": "low"},
        prompt_cache_key="pck-1",
        safety_identifier="sid-1",
        service_tier="auto",
        max_tool_calls=2,
        background=False,
    )
    response = raw.parse()
    assert response.status == "completed" and response.output_text == "Hello, Tollway!"
    assert response.truncation == "auto" and response.reasoning is not None and response.reasoning.summary == "auto"
    sent = _sent(fake_upstream)
    if _native(stack):
        expected = {"include": [], "truncation": "auto", "prompt_cache_key": "pck-1", "safety_identifier": "sid-1"}
        assert {k: sent[k] for k in expected} == expected
        assert (sent["service_tier"], sent["max_tool_calls"], sent["text"]) == ("auto", 2, {"verbosity": "low"})
        assert sent["reasoning"] == {"summary": "auto", "effort": "low"} and "background" not in sent
    else:
        assert not PARITY_KEYS & set(sent) and "verbosity" not in sent
    # The reasoning comes back as a reasoning item with summary_text: passed through from openai, built from the
    # reasoning content over chat.
    first = response.output[0]
    assert first.type == "reasoning" and [s.text for s in first.summary] == [THOUGHT]
    assert [item.type for item in response.output] == ["reasoning", "message"]
    (row,) = logs_for(stack.tenant, raw.headers["x-request-id"])
    assert (row["request_type"], row["status"]) == ("response", "success")


def test_without_summary_chat_reasoning_stays_out(sdk: openai.OpenAI, stack: Stack) -> None:
    response = sdk.responses.create(model="thinker", input="Hello, Tollway!")
    types = [item.type for item in response.output]
    assert types == (["reasoning", "message"] if _native(stack) else ["message"])


def test_reasoning_summary_streams(sdk: openai.OpenAI, stack: Stack) -> None:
    with sdk.responses.stream(model="thinker", input="Hello, Tollway!", reasoning={"summary": "concise"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "Hello, Tollway!" and events[-1].type == "response.completed"
    if stack.row.dialect == "asi1-old":  # old ASI:One streams thoughts as top-level events, not reasoning content
        return
    types = [e.type for e in events]
    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert summary == THOUGHT
    for kind in ("response.reasoning_summary_part.added", "response.reasoning_summary_text.done"):
        assert kind in types
    # The reasoning item is done before the message starts, as OpenAI streams it.
    assert types.index("response.reasoning_summary_part.done") < types.index("response.content_part.added")
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].type == "reasoning" and final.output[0].summary[0].text == THOUGHT


# Hosted-tool items come only from a provider's own Responses API, so this runs on the openai row alone.
@pytest.mark.parametrize("stack", [row for row in ROWS if row.kind == "openai"], ids=["openai"], indirect=True)
def test_hosted_tool_and_reasoning_items_pass_through_and_round_trip(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    assert _native(stack)
    first = sdk.responses.create(model="hosted", input="Hi", include=["reasoning.encrypted_content"])
    assert [item.type for item in first.output] == ["reasoning", "web_search_call", "message"]
    assert first.output[0].type == "reasoning" and first.output[0].encrypted_content == ENCRYPTED_REASONING
    with sdk.responses.stream(model="hosted", input="Hi") as stream:
        events = list(stream)
        streamed = stream.get_final_response()
    types = [e.type for e in events]
    assert "response.web_search_call.searching" in types and "response.reasoning_summary_text.delta" in types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [item.type for item in streamed.output] == ["reasoning", "web_search_call", "message"]
    stored = sdk.responses.retrieve(streamed.id)
    assert [item.type for item in stored.output] == ["reasoning", "web_search_call", "message"]
    # Stored and sent back: the encrypted reasoning and the hosted call go to openai on the next turn.
    sdk.responses.create(model="echo", input="Again", previous_response_id=first.id)
    sent = _sent(fake_upstream)["input"]
    assert [item["type"] for item in sent] == ["message", "reasoning", "web_search_call", "message", "message"]
    assert sent[1] == first.output[0].model_dump(exclude_none=True) and sent[1]["encrypted_content"]
    # Without encrypted content OpenAI cannot resolve a reasoning item (store: false): it is left out.
    sdk.responses.create(model="echo", input="Again", previous_response_id=streamed.id)
    sent = _sent(fake_upstream)["input"]
    assert [item["type"] for item in sent] == ["message", "web_search_call", "message", "message"]


def test_items_echoed_back_as_input_are_accepted(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    """What the Agents SDK does without previous_response_id: the earlier output goes back in ``input``."""
    first = sdk.responses.create(model="thinker", input="Hello", reasoning={"summary": "auto"})
    history: Any = [{"role": "user", "content": "Hello"}, *[i.model_dump(exclude_none=True) for i in first.output]]
    second = sdk.responses.create(model="echo", input=[*history, {"role": "user", "content": "Again"}])
    assert second.output_text == "Again"
    sent = _sent(fake_upstream)
    if not _native(stack):
        assert "reasoning" not in str(sent.get("messages", sent.get("contents", "")))


def test_background_is_refused_everywhere(sdk: openai.OpenAI, stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        sdk.responses.create(model="echo", input="x", background=True)
    assert err.value.code == "unsupported_parameter" and err.value.param == "background"


def test_prompt_is_forwarded_to_openai_and_refused_over_chat(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    prompt: Any = {"id": "pmpt_123", "variables": {"city": "Paris"}}
    if _native(stack):
        sdk.responses.create(model="echo", input="x", prompt=prompt)
        assert _sent(fake_upstream)["prompt"] == prompt
        return
    with pytest.raises(openai.BadRequestError) as err:
        sdk.responses.create(model="echo", input="x", prompt=prompt)
    assert err.value.code == "unsupported_parameter" and err.value.param == "prompt"


def test_logprobs_are_translated_or_refused(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    include: Any = ["message.output_text.logprobs"]
    if stack.row.kind in ("anthropic", "gemini", "asi1"):  # logprobs are ✗ for these kinds (SPEC §7.4)
        with pytest.raises(openai.BadRequestError) as err:
            sdk.responses.create(model="echo", input="x", include=include, top_logprobs=2)
        assert err.value.code == "unsupported_parameter" and err.value.param == "include"
        assert "'include'" in err.value.message and "'logprobs'" not in err.value.message
        with pytest.raises(openai.BadRequestError) as err:
            sdk.responses.create(model="echo", input="x", top_logprobs=2)
        assert err.value.code == "unsupported_parameter" and err.value.param == "top_logprobs"
        return
    sdk.responses.create(model="echo", input="x", include=include, top_logprobs=2)
    sent = _sent(fake_upstream)
    if _native(stack):
        assert (sent["include"], sent["top_logprobs"]) == (include, 2)
    else:
        assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)


def test_asi1_extensions_forwarded_only_to_asi1(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    extensions = {"agent_address": "agent1qxyz", "web_search": True, "planner_mode": False, "study_mode": True}
    session = session_id()
    sdk.responses.create(model="echo", input="x", extra_body=extensions, extra_headers={"x-session-id": session})
    sent = fake_upstream.requests[-1]
    if stack.row.asi1:
        assert {k: sent.body[k] for k in extensions} == extensions
        assert sent.headers["x-session-id"] == session
    else:
        assert not set(extensions) & set(sent.body) and "x-session-id" not in sent.headers


def test_truncation_auto_drops_the_oldest_items_over_chat(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    history: Any = [{"role": "system", "content": "Be brief."}]
    for turn in range(12):
        history.append({"role": "user" if turn % 2 == 0 else "assistant", "content": f"message {turn} " + "x" * 80})
    history.append({"role": "user", "content": "Last question"})
    response = sdk.responses.create(model="tiny", input=history, truncation="auto")
    assert response.output_text == "Last question"
    sent = _sent(fake_upstream)
    if _native(stack):
        assert sent["truncation"] == "auto" and len(sent["input"]) == len(history)
        return
    text = str(sent)
    assert "Be brief." in text and "Last question" in text
    assert "message 0 " not in text and "message 11 " in text
    sdk.responses.create(model="tiny", input=history)  # truncation disabled: everything is sent
    assert "message 0 " in str(_sent(fake_upstream))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_gemini_thought_signatures_round_trip_through_stored_responses(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread, stream: bool
) -> None:
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    if stream:
        with sdk.responses.stream(model="tool", input="Weather?", tools=tools) as events:
            first = events.get_final_response()
    else:
        first = sdk.responses.create(model="tool", input="Weather?", tools=tools)
    call = first.output[-1]
    assert call.type == "function_call"
    extra = (call.model_extra or {}).get("extra_content")
    answer: Any = [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    sdk.responses.create(model="echo", input=answer, tools=tools, previous_response_id=first.id)
    sent = _sent(fake_upstream)
    if stack.row.kind != "gemini":
        assert extra is None and "extra_content" not in str(sent)
        return
    assert extra == {"google": {"thought_signature": THOUGHT_SIGNATURE}}
    (model_turn,) = [c for c in sent["contents"] if c["role"] == "model"]
    assert model_turn["parts"][-1]["thoughtSignature"] == THOUGHT_SIGNATURE
    # Echoed back by the client (no previous_response_id), the signature goes upstream too.
    history: Any = [{"role": "user", "content": "Weather?"}, call.model_dump(exclude_none=True), *answer]
    sdk.responses.create(model="echo", input=history, tools=tools)
    (model_turn,) = [c for c in _sent(fake_upstream)["contents"] if c["role"] == "model"]
    assert model_turn["parts"][-1]["thoughtSignature"] == THOUGHT_SIGNATURE


def test_gemini_thought_signatures_round_trip_over_chat_completions(
    sdk: openai.OpenAI, stack: Stack, fake_upstream: FakeUpstreamThread
) -> None:
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    user: Any = {"role": "user", "content": "Weather?"}
    message = sdk.chat.completions.create(model="tool", messages=[user], tools=tools).choices[0].message
    assert message.tool_calls
    turn: Any = message.model_dump(exclude_none=True)
    reply: Any = {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny"}
    sdk.chat.completions.create(model="echo", messages=[user, turn, reply], tools=tools)
    sent = _sent(fake_upstream)
    if stack.row.kind == "gemini":
        (model_turn,) = [c for c in sent["contents"] if c["role"] == "model"]
        assert model_turn["parts"][-1]["thoughtSignature"] == THOUGHT_SIGNATURE
    else:
        assert "extra_content" not in str(sent) and "thoughtSignature" not in str(sent)
