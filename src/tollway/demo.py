"""``tollway demo`` (what ``make run`` starts): the embedded gateway on SQLite, the fake upstream, and a demo
platform seeded through the real operator and platform APIs, with 30 days of past usage for the console's charts,
and the console URL, keys and copy-paste examples printed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import fcntl
import json
import os
import random
import secrets
import shutil
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

import aiohttp
import uvicorn

from tollway.app import create_app
from tollway.demo_banner import AGENT_ARGS, AGENT_TOOL, banner
from tollway.domain.clock import utcnow
from tollway.domain.money import NANOS_PER_USD, usd_to_nanos
from tollway.domain.pricing import Prices, Usage, charge_nanos, cost_nanos
from tollway.fake_upstream.mcp_app import bind, demo_mcp_server
from tollway.fake_upstream.server import DIALECT_PATHS, FakeUpstream, start_fake_upstream
from tollway.serving import uvicorn_options
from tollway.settings import Settings
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.demo_history import PastCall, PastTopup, record_history
from tollway.storage.sql.migrate import upgrade


async def _call(session: aiohttp.ClientSession, method: str, url: str, key: str, body: Any = None) -> Any:
    async with session.request(method, url, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        payload = await response.json()
        if response.status >= 300:
            raise RuntimeError(f"{method} {url} -> {response.status}: {payload}")
        return payload


DEMO_PRICES: Final = {"input_price_per_mtok": "0.15", "output_price_per_mtok": "0.6"}
DEMO_MODELS: Final = (("gpt-4o-mini", "fake/default"), ("echo", "fake/echo"))
_WEATHER_ARGS = json.dumps({"city": "Paris"}, separators=(",", ":"))
# Models that show one feature each (all on the built-in fake upstream):
FEATURE_MODELS: Final = (
    # calls get_weather until the conversation holds its result, then answers with it
    ("tools", f"fake/agent?name=get_weather&args={_WEATHER_ARGS}"),
    # thinks out loud first (reasoning_content / reasoning items), with its reasoning tokens reported
    ("reasoner", "fake/echo?thought=The user greets me; I will greet them back.&reasoning=12"),
)
DEMO_RATE_LIMITS: Final = {"rpm_limit": 60, "tpm_limit": 200_000, "rpd_limit": 5_000}
DEMO_IMAGE_PRICE_USD: Final = "0.04"
DEMO_HOST: Final = "127.0.0.1"
DEMO_FUNDS_USD: Final = 25
DEMO_MARKUP_PERCENT: Final = 20
# End users with 30 days of history (no budget: see storage/sql/demo_history.py); demo-user has the $5 budget.
HISTORY_USERS: Final = ("ada", "brook", "chen", "dara", "emil", "farah", "gus")
HISTORY_DAYS: Final = 30


async def seed(base: str, admin_key: str, upstream_base: str, mcp_url: str) -> dict[str, str]:
    """The demo platform through the real operator and platform APIs: the fake providers (OpenAI-compatible and
    ASI:One-style) and their models, the platform (markup 20 %) with LLM configs and the built-in MCP app at
    ``mcp_url``, demo-user with a $5 monthly budget and rate limits, and the end users of the history. The wallet
    is funded by ``seed_history`` (its opening top-up comes before the past calls)."""
    asi1_base = upstream_base.removesuffix(DIALECT_PATHS["openai"]) + DIALECT_PATHS["asi1"]
    async with aiohttp.ClientSession() as session:
        provider = await _call(
            session,
            "POST",
            f"{base}/v1/admin/providers",
            admin_key,
            {"slug": "fake", "name": "Built-in fake upstream", "kind": "openai_compatible", "base_url": upstream_base},
        )
        chat = {**DEMO_PRICES, "max_output_tokens": 1024}
        rows = (
            *({"slug": slug, "upstream_model": upstream, **chat} for slug, upstream in DEMO_MODELS),
            # An agent model: it calls the built-in app's lookup_order through an `mcp` tool, then answers with the
            # result (the gateway runs the loop, SPEC §16.3).
            {"slug": "agent", "upstream_model": f"fake/agent?name={AGENT_TOOL}&args={AGENT_ARGS}", **chat},
            # OpenAI's list prices: $0.02 per million input tokens; moderations are free (SPEC §19).
            {
                "slug": "text-embedding-3-small",
                "upstream_model": "text-embedding-3-small",
                "input_price_per_mtok": "0.02",
                "output_price_per_mtok": "0",
                "max_output_tokens": 1,
                "context_window": 8192,
            },
            {
                "slug": "omni-moderation-latest",
                "upstream_model": "omni-moderation-latest",
                "input_price_per_mtok": "0",
                "output_price_per_mtok": "0",
                "max_output_tokens": 1,
                "price_per_request": "0",
            },
        )
        rows = (
            *rows,
            *({"slug": slug, "upstream_model": upstream, **chat} for slug, upstream in FEATURE_MODELS),
            {"slug": "gpt-image-1", "upstream_model": "gpt-image-1", **chat, "price_per_image": DEMO_IMAGE_PRICE_USD},
        )
        for row in rows:
            await _call(session, "POST", f"{base}/v1/admin/models", admin_key, {**row, "provider_id": provider["id"]})
        # An ASI:One-style provider (its own wire format: sessions, agent addresses, executed tool records).
        asi1 = await _call(
            session,
            "POST",
            f"{base}/v1/admin/providers",
            admin_key,
            {"slug": "asi1", "name": "ASI:One (fake)", "kind": "asi1", "base_url": asi1_base},
        )
        asi1_row = {"slug": "asi1-mini", "upstream_model": "fake/echo", **chat, "provider_id": asi1["id"]}
        await _call(session, "POST", f"{base}/v1/admin/models", admin_key, asi1_row)
        settings = {"markup_percentage": DEMO_MARKUP_PERCENT}
        created = await _call(
            session, "POST", f"{base}/v1/admin/platforms", admin_key, {"name": "Demo Notes", "settings": settings}
        )
        platform_id = created["platform"]["id"]
        platform_key = created["api_key"]["raw_key"]
        for provider_id in (provider["id"], asi1["id"]):
            await _call(
                session,
                "POST",
                f"{base}/v1/platforms/{platform_id}/llm-configs",
                platform_key,
                {"provider_id": provider_id, "api_key": "sk-demo-provider-key-not-real"},
            )
        users = f"{base}/v1/platforms/{platform_id}/end-users"
        user = await _call(
            session, "POST", users, platform_key, {"external_id": "demo-user", "display_name": "Dana (demo)"}
        )
        await _call(
            session, "POST", f"{users}/{user['id']}/budget", platform_key, {"max_usd": "5", "period": "monthly"}
        )
        # Rate limits of its own, so that inference answers carry the x-ratelimit-* headers (SPEC §10).
        await _call(session, "PUT", f"{users}/{user['id']}/rate-limits", platform_key, DEMO_RATE_LIMITS)
        # The built-in MCP app (no network needed), served by this process; $0.001 a call after the free tier.
        app = {"slug": "demo-tools", "name": "Demo tools", "server_url": mcp_url, "auth": {"type": "none"}}
        await _call(session, "POST", f"{base}/v1/platforms/{platform_id}/mcp/apps", platform_key, app)
        history_users = [
            (await _call(session, "POST", users, platform_key, {"external_id": name}))["id"] for name in HISTORY_USERS
        ]
    return {
        "platform_id": platform_id,
        "platform_key": platform_key,
        "provider_id": provider["id"],
        "end_user_id": user["id"],
        "end_user_key": user["api_key"]["raw_key"],
        "history_users": ",".join(history_users),
    }


def past_calls(seeded: dict[str, str], now: datetime, days: int = HISTORY_DAYS) -> list[PastCall]:
    """A deterministic month of chat calls: weekday-shaped traffic, a few heavy users, ~3 % upstream errors."""
    rng = random.Random(17)
    users: list[str | None] = [*seeded["history_users"].split(","), None]
    weights = [30, 22, 15, 10, 8, 5, 3, 7][: len(users)]
    input_nanos, output_nanos = (usd_to_nanos(DEMO_PRICES[k], k) for k in DEMO_PRICES)
    prices = Prices(input_nanos, output_nanos)
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    calls: list[PastCall] = []
    for day in range(days):
        midnight = start + timedelta(days=day)
        weekend = midnight.weekday() >= 5
        for _ in range(rng.randint(8, 14) if weekend else rng.randint(20, 40)):
            at = midnight + timedelta(seconds=rng.randint(0, 86_399))
            if at >= now - timedelta(minutes=1):
                continue
            user = rng.choices(users, weights)[0]
            model, upstream = rng.choice(DEMO_MODELS)
            usage = Usage(prompt_tokens=rng.randint(200, 4000), completion_tokens=rng.randint(40, 1200))
            cost = cost_nanos(usage, prices)
            charged = None if user is None else charge_nanos(usage, prices, DEMO_MARKUP_PERCENT * 100)
            failed = rng.random() < 0.03
            calls.append(
                PastCall(
                    at=at,
                    end_user_id=user,
                    model=model,
                    provider_id=seeded["provider_id"],
                    provider_model=upstream,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    latency_ms=rng.randint(300, 2500),
                    ttft_ms=rng.randint(80, 400),
                    cost_nanos=0 if failed else cost,
                    charged_nanos=charged,
                    error_code="upstream_error" if failed else None,
                )
            )
    return calls


async def seed_history(settings: Settings, seeded: dict[str, str], now: datetime | None = None) -> None:
    """The wallet's opening top-up 30 days ago and the month of calls since, so the console's charts have data."""
    moment = now or utcnow()
    opening = (moment - timedelta(days=HISTORY_DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    topup = PastTopup(opening - timedelta(minutes=5), DEMO_FUNDS_USD * NANOS_PER_USD, "demo funds")
    engine = create_engine(settings)
    try:
        await record_history(engine, seeded["platform_id"], topup, past_calls(seeded, moment))
    finally:
        await engine.dispose()


class DemoError(Exception):
    """Why the demo cannot start, in one line for the terminal (``tollway demo`` prints it and exits)."""


_LOCK_NAME: Final = "demo.lock"


def claim_data_dir(root: Path) -> IO[str]:
    """An exclusive lock on ``root`` for as long as this demo runs (the OS frees it when the process ends): a
    second demo on the same data directory stops here instead of wiping the first one's database."""
    root.mkdir(parents=True, exist_ok=True)
    handle = (root / _LOCK_NAME).open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DemoError(
            f"another demo is running with the data directory {root}: stop it first (Ctrl+C), or pass --data-dir"
        ) from None
    return handle


def listen(host: str, port: int) -> socket.socket:
    """The gateway's listening socket, bound before anything is wiped or started."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        raise DemoError(
            f"port {port} on {host} {reason} (another demo?): choose another with --port N or TOLLWAY_PORT=N"
        ) from None
    return sock


def _fresh_dir(root: Path) -> None:
    """Empties ``root`` (this demo holds its lock, which stays)."""
    for child in root.iterdir():
        if child.name == _LOCK_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


async def run_demo(port: int, upstream_port: int, data_dir: str) -> None:
    root = Path(data_dir)
    lock = claim_data_dir(root)
    try:
        sock = listen(DEMO_HOST, port)
    except DemoError:
        lock.close()
        raise
    try:
        try:
            fake = await start_fake_upstream("127.0.0.1", upstream_port)
        except OSError as exc:
            raise DemoError(
                f"the fake upstream cannot listen on port {upstream_port} ({exc.strerror}): pass --upstream-port N"
            ) from None
        try:
            await asyncio.to_thread(_fresh_dir, root)
            await _serve(root, sock, fake)
        finally:
            await fake.close()
    finally:
        sock.close()
        lock.close()


async def _serve(root: Path, sock: socket.socket, fake: FakeUpstream) -> None:
    port = sock.getsockname()[1]
    admin_key = "sk-admin_" + secrets.token_urlsafe(32)
    settings = Settings(
        database_url=f"sqlite:///{root / 'tollway.db'}",
        admin_key=admin_key,
        secret_key=base64.b64encode(os.urandom(32)).decode(),
        data_dir=root,
        host=DEMO_HOST,
        port=port,
        log_level="warning",
        allow_private_urls=True,  # the built-in MCP app listens on 127.0.0.1 over http (SPEC §11.5, development)
    )
    await upgrade(settings)
    mcp_socket, mcp_url = bind()
    mcp_server = demo_mcp_server()
    mcp_serving = asyncio.create_task(mcp_server.serve(sockets=[mcp_socket]))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), **uvicorn_options(settings)))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if serving.done():
                await serving
                return
            await asyncio.sleep(0.05)
        base = f"http://{settings.host}:{port}"
        while not mcp_server.started:
            if mcp_serving.done():
                await mcp_serving
                return
            await asyncio.sleep(0.05)
        seeded = await seed(base, admin_key, fake.base_url, mcp_url)
        await seed_history(settings, seeded)
        print(banner(base, admin_key, seeded, DEMO_FUNDS_USD, DEMO_RATE_LIMITS), flush=True)
        await serving
    finally:
        server.should_exit = True
        mcp_server.should_exit = True
        with contextlib.suppress(Exception):
            await mcp_serving
        mcp_socket.close()
