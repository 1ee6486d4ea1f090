"""The official ``openai`` Python SDK: sync, async, streaming, tools, and Responses with include and reasoning."""

from __future__ import annotations

import json

import openai
import pytest

from tests.clients.conftest import Account


def test_sync_chat_answers_and_is_billed(account: Account) -> None:
    with openai.OpenAI(base_url=account.base_url, api_key=account.key, max_retries=0) as client:
        reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "Bonjour Tollway"}])
    assert reply.choices[0].message.content == "Bonjour Tollway"
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (7, 5)
    [row] = account.rows(1)
    assert (row["request_type"], row["prompt_tokens"], row["completion_tokens"]) == ("chat.completion", 7, 5)
    account.assert_billed([row])


async def test_async_stream_with_usage(account: Account) -> None:
    async with openai.AsyncOpenAI(base_url=account.base_url, api_key=account.key, max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        async for chunk in stream:
            text += "".join(c.delta.content or "" for c in chunk.choices)
            usage = chunk.usage or usage
    assert text == "one two three"
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (7, 5)
    [row] = account.rows(1)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (7, 5)
    account.assert_billed([row])


def test_tool_call_round_trip(account: Account) -> None:
    tools: list[dict[str, object]] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Paris?"}]
    with openai.OpenAI(base_url=account.base_url, api_key=account.key, max_retries=0) as client:
        first = client.chat.completions.create(model="agent", messages=messages, tools=tools)  # type: ignore[arg-type]
        [call] = first.choices[0].message.tool_calls or []
        assert first.choices[0].finish_reason == "tool_calls"
        assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C"},
        ]
        second = client.chat.completions.create(model="agent", messages=messages, tools=tools)  # type: ignore[arg-type]
    assert second.choices[0].message.content == "The tool returned: Sunny, 24 C"
    account.assert_billed(account.rows(2))


@pytest.mark.parametrize("stream", [False, True])
def test_responses_with_include_and_a_reasoning_summary(account: Account, stream: bool) -> None:
    with openai.OpenAI(base_url=account.base_url, api_key=account.key, max_retries=0) as client:
        arguments: dict[str, object] = {
            "model": "thinker",
            "input": "Where is Paris?",
            "include": ["reasoning.encrypted_content"],
            "reasoning": {"summary": "auto"},
            "text": {"verbosity": "low"},
            "truncation": "auto",
        }
        if stream:
            with client.responses.stream(**arguments) as events:  # type: ignore[arg-type]
                response = events.get_final_response()
        else:
            response = client.responses.create(**arguments)  # type: ignore[arg-type]
    reasoning = [item for item in response.output if item.type == "reasoning"]
    assert [s.text for item in reasoning for s in item.summary] == ["Paris is in France."]
    assert response.output_text == "Hello! I am a fake model."
    assert response.usage is not None
    [row] = account.rows(1)
    assert row["request_type"] == "response"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        response.usage.input_tokens,
        response.usage.output_tokens,
    )
    account.assert_billed([row])
