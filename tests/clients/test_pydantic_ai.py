"""pydantic-ai: an agent with a tool over chat completions and over the Responses API, run to completion."""

from __future__ import annotations

import pytest
from openai import AsyncOpenAI
from pydantic_ai import Agent
from pydantic_ai.models import Model
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.clients.conftest import Account


@pytest.mark.parametrize(("endpoint", "request_type"), [("chat", "chat.completion"), ("responses", "response")])
async def test_an_agent_with_a_tool_runs_to_completion(account: Account, endpoint: str, request_type: str) -> None:
    client = AsyncOpenAI(base_url=account.base_url, api_key=account.key, max_retries=0)
    provider = OpenAIProvider(openai_client=client)
    model: Model = (
        OpenAIChatModel("agent", provider=provider)
        if endpoint == "chat"
        else OpenAIResponsesModel("agent", provider=provider)
    )
    agent = Agent(model, instructions="Answer with the weather tool.")

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"Sunny in {city}"

    try:
        result = await agent.run("What is the weather in Paris?")
    finally:
        await client.close()
    assert result.output == "The tool returned: Sunny in Paris"
    usage = result.usage
    assert usage.requests == 2
    rows = account.rows(2)
    assert {r["request_type"] for r in rows} == {request_type}
    assert sum(r["prompt_tokens"] for r in rows) == usage.input_tokens
    assert sum(r["completion_tokens"] for r in rows) == usage.output_tokens
    account.assert_billed(rows)
