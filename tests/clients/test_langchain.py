"""langchain-openai: chat, and the Responses API with a reasoning summary (the LangChain path that used to fail)."""

from __future__ import annotations

from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from tests.clients.conftest import Account


def test_chat_invoke_reports_usage_and_is_billed(account: Account) -> None:
    llm = ChatOpenAI(model="echo", base_url=account.base_url, api_key=SecretStr(account.key), max_retries=0)
    message = llm.invoke("Hello from LangChain")
    assert message.content == "Hello from LangChain"
    assert message.usage_metadata is not None
    assert (message.usage_metadata["input_tokens"], message.usage_metadata["output_tokens"]) == (7, 5)
    account.assert_billed(account.rows(1))


def test_responses_with_a_reasoning_summary(account: Account) -> None:
    llm = ChatOpenAI(
        model="thinker",
        base_url=account.base_url,
        api_key=SecretStr(account.key),
        max_retries=0,
        use_responses_api=True,
        reasoning={"summary": "auto"},
    )
    message = llm.invoke("Where is Paris?")
    blocks = message.content_blocks
    reasoning = [b.get("reasoning") for b in blocks if b["type"] == "reasoning"]
    text = [b.get("text") for b in blocks if b["type"] == "text"]
    assert reasoning == ["Paris is in France."]
    assert text == ["Hello! I am a fake model."]
    [row] = account.rows(1)
    assert row["request_type"] == "response"
    assert message.usage_metadata is not None
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        message.usage_metadata["input_tokens"],
        message.usage_metadata["output_tokens"],
    )
    account.assert_billed([row])
