"""The OpenAI Agents SDK: an agent with a function tool runs to completion through /v1/responses (a provider's own
Responses API, and Responses over chat) and through /v1/chat/completions; every model turn is billed once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agents import (
    Agent,
    Model,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

from tests.clients.conftest import Account


@pytest.fixture(autouse=True)
def no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)  # traces would be exported to OpenAI, which this machine cannot reach
    yield
    set_tracing_disabled(False)


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def _model(endpoint: str, slug: str, client: AsyncOpenAI) -> Model:
    if endpoint == "responses":
        return OpenAIResponsesModel(model=slug, openai_client=client)
    return OpenAIChatCompletionsModel(model=slug, openai_client=client)


@pytest.mark.parametrize(
    ("endpoint", "slug", "request_type"),
    [
        ("responses", "agent-native", "response"),  # kind openai: its own Responses API
        ("responses", "agent", "response"),  # openai_compatible: Responses over chat
        ("chat", "agent", "chat.completion"),
    ],
)
async def test_an_agent_with_a_function_tool_runs_to_completion(
    account: Account, endpoint: str, slug: str, request_type: str
) -> None:
    client = AsyncOpenAI(base_url=account.base_url, api_key=account.key, max_retries=0)
    agent = Agent(
        name="Weather",
        instructions="Answer with the weather tool.",
        tools=[get_weather],
        model=_model(endpoint, slug, client),
    )
    try:
        result = await Runner.run(agent, "What is the weather in Paris?")
    finally:
        await client.close()
    assert result.final_output == "The tool returned: Sunny in Paris"
    usage = result.context_wrapper.usage
    assert usage.requests == 2
    rows = account.rows(2)
    assert {r["request_type"] for r in rows} == {request_type}
    assert sum(r["prompt_tokens"] for r in rows) == usage.input_tokens
    assert sum(r["completion_tokens"] for r in rows) == usage.output_tokens
    account.assert_billed(rows)
