"""Browser tests of the console (SPEC §17.1): Playwright drives the Debian ``chromium`` package, headless, against
Tollway served by uvicorn with the demo's data (30 days of usage).

Mandatory when TOLLWAY_REQUIRE_BROWSER=1 (CI sets it): a missing chromium then fails; elsewhere these tests are
skipped with a loud warning. No browser is ever downloaded (``playwright install`` is not used)."""

from __future__ import annotations

import asyncio
import os
import shutil
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.conftest import make_settings
from tests.support.servers import GatewayServer
from tollway.demo import seed, seed_history
from tollway.fake_upstream.server import FakeUpstreamThread

UNUSED_MCP_URL = "http://127.0.0.1:9/mcp"  # the demo's MCP app; these tests never call it


def _required() -> bool:
    return os.environ.get("TOLLWAY_REQUIRE_BROWSER", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    found = shutil.which("chromium")
    if found is None:
        if _required():
            pytest.fail("chromium is missing but TOLLWAY_REQUIRE_BROWSER=1 (apt-get install -y chromium)")
        message = "chromium not found: the console's browser tests are SKIPPED (CI runs them)"
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # shown in the summary, not turned into an error by filterwarnings
            warnings.warn(message, pytest.PytestWarning, stacklevel=1)
        pytest.skip(message)
    return found


# Module scope, not session: while Playwright's sync driver runs, its event loop counts as running in this thread,
# which async tests collected after these (tests/e2e, tests/integration...) could not live with.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium_path: str) -> Iterator[Browser]:
    # --no-sandbox: CI runs as root, where chromium's sandbox cannot start.
    launched = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=["--no-sandbox"])
    yield launched
    launched.close()


@dataclass(frozen=True)
class DemoApp:
    url: str
    admin_key: str
    platform_id: str
    platform_key: str
    end_user_id: str
    end_user_key: str
    history_users: list[str]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstreamThread) -> Iterator[DemoApp]:
    tmp = tmp_path_factory.mktemp("console")
    settings = make_settings(tmp, f"sqlite:///{Path(tmp) / 'tollway.db'}")
    assert settings.admin_key is not None
    server = GatewayServer(settings)
    admin_key = settings.admin_key

    def start() -> dict[str, str]:
        # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
        server.start()
        seeded = asyncio.run(seed(server.url, admin_key, fake_upstream.base_url, UNUSED_MCP_URL))
        asyncio.run(seed_history(settings, seeded))
        return seeded

    with ThreadPoolExecutor(1) as pool:
        seeded = pool.submit(start).result()
    try:
        yield DemoApp(
            server.url,
            settings.admin_key,
            seeded["platform_id"],
            seeded["platform_key"],
            seeded["end_user_id"],
            seeded["end_user_key"],
            seeded["history_users"].split(","),
        )
    finally:
        server.stop()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    fresh = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    yield fresh
    fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, app: DemoApp, key: str) -> None:
    page.goto(f"{app.url}/console/sign-in")
    page.fill("#key", key)
    page.click("form[action='/console/sign-in'] button[type=submit]")
    page.wait_for_url(f"{app.url}/console")
