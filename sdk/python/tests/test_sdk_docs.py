"""docs/sdk.md is run, block by block, against a live Tollway: the README's setup in Python and the platform's first
hour (settings, end users with budgets, keys, inference with 402 handled, usage, debits and suspension, webhooks,
lists, the async client). Only what a reader must supply is provided: the operator key, a provider key, a webhook
URL, and the deployment's address; the provider the page registers is then pointed at the fake upstream."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from tollway.fake_upstream.server import FakeUpstreamThread

from tollway_sdk import Tollway

from tests.support.seed import FAKE_PROVIDER_KEY
from tests.support.webhook_receiver import WebhookReceiver

PAGE = Path(__file__).parents[3] / "docs" / "sdk.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


def test_the_page_runs(
    gateway_url: str, admin_key: str, fake_upstream: FakeUpstreamThread, receiver: WebhookReceiver
) -> None:
    blocks = [block.replace("http://localhost:8080", gateway_url) for block in python_blocks(PAGE.read_text())]
    assert len(blocks) >= 10
    page: dict[str, Any] = {"ADMIN_KEY": admin_key, "OPENAI_API_KEY": FAKE_PROVIDER_KEY, "WEBHOOK_URL": receiver.url}
    try:
        exec(compile(blocks[0], f"{PAGE}#block-1", "exec"), page)
        # The page registers the real OpenAI; this deployment has no network: serve it from the fake upstream.
        admin: Tollway = page["admin"]
        admin.admin.providers.update(page["openai_provider"].id, base_url=fake_upstream.dialect_base_url("openai"))
        for number, block in enumerate(blocks[1:], start=2):
            exec(compile(block, f"{PAGE}#block-{number}", "exec"), page)
        _check(page)
    finally:
        for name in ("admin", "acme"):  # the page's clients (dana_client shares acme's connections)
            if name in page:
                page[name].close()


def _check(page: dict[str, Any]) -> None:
    admin: Tollway = page["admin"]

    acme: Tollway = page["acme"]
    dana = page["dana"]
    assert page["answer"].choices[0].message.content
    assert page["spent"] > 0 and page["budget"].used_usd == page["spent"]
    assert page["mine"].max_usd == Decimal("22.50")
    budget = acme.platform.budgets.retrieve(dana.id)
    assert budget.used_usd == page["spent"] + Decimal("1.00") and budget.is_suspended is False
    kinds = [t.type for t in acme.platform.budgets.list_transactions(dana.id)]
    assert kinds[:4] == ["unsuspend", "suspend", "debit", "inference"]
    assert page["signing_secret"].startswith("whsec_")
    assert "user-1842" in page["every_user"]
    assert admin.admin.reconcile().ok
