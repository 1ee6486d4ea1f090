"""SPEC §19: importing LiteLLM's price catalogue (a real subset of the published file) through
``POST /v1/admin/models/import`` and ``tollway prices import``, on SQLite and PostgreSQL: the dry run's diff is exactly
what the real run applies, a second import changes nothing, malformed entries apply nothing."""

from __future__ import annotations

import asyncio
import http.server
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest

from tests.support.servers import GatewayServer
from tollway.domain.price_catalog import parse_catalog, plan_import
from tollway.errors import InvalidRequest
from tollway.providers.price_catalog import HttpCatalogSource
from tollway.services.management.price_import import COLUMNS
from tollway.storage.sql.catalog_admin import CatalogAdminStore
from tollway.storage.sql.db import create_engine

T = TypeVar("T")
CATALOG_PATH = Path(__file__).parents[1] / "data" / "litellm_model_prices.json"
CATALOG = CATALOG_PATH.read_bytes()
TOLLWAY = str(Path(sys.executable).with_name("tollway"))
ROW_FIELDS = (
    "input_price_per_mtok", "output_price_per_mtok", "cached_input_price_per_mtok", "cache_write_price_per_mtok",
    "price_per_image", "price_per_request", "context_window", "max_output_tokens",
)  # fmt: skip


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _provider(admin: httpx.Client, kind: str, slug: str | None = None) -> dict[str, Any]:
    body = {"slug": slug or f"{kind}-{uuid.uuid4().hex[:8]}", "name": "P", "kind": kind}
    if kind == "openai_compatible":
        body["base_url"] = "http://127.0.0.1:9/v1"
    return _ok(admin.post("/v1/admin/providers", json=body), 201)


def _model(admin: httpx.Client, provider_id: str, upstream: str, **extra: Any) -> dict[str, Any]:
    body = {
        "slug": f"m-{uuid.uuid4().hex[:8]}",
        "provider_id": provider_id,
        "upstream_model": upstream,
        "input_price_per_mtok": "1",
        "output_price_per_mtok": "2",
        "max_output_tokens": 100,
        **extra,
    }
    return _ok(admin.post("/v1/admin/models", json=body), 201)


def _rows(admin: httpx.Client, provider_id: str) -> dict[str, dict[str, Any]]:
    listed = _ok(admin.get("/v1/admin/models", params={"provider_id": provider_id, "limit": 100}))["data"]
    return {r["id"]: r for r in listed}


def _import(admin: httpx.Client, provider: str | None, *, dry_run: bool, body: bytes = CATALOG) -> httpx.Response:
    params = {"dry_run": "true" if dry_run else "false", **({"provider": provider} if provider else {})}
    headers = {"Content-Type": "application/json"}
    return admin.post("/v1/admin/models/import", params=params, content=body, headers=headers)


def _without_run_flags(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("dry_run", "applied")}


def test_dry_run_then_real_run_apply_exactly_the_diff(admin: httpx.Client) -> None:
    anthropic = _provider(admin, "anthropic")
    sonnet = _model(admin, anthropic["id"], "claude-sonnet-4-5", cached_input_price_per_mtok="0.1")
    haiku = _model(admin, anthropic["id"], "claude-haiku-4-5", min_output_tokens=16)
    stranger = _model(admin, anthropic["id"], "not-in-the-catalogue")
    before = _rows(admin, anthropic["id"])

    dry = _ok(_import(admin, None, dry_run=True))
    assert (dry["dry_run"], dry["applied"], dry["malformed"]) == (True, False, [])
    assert _rows(admin, anthropic["id"]) == before  # a dry run changes nothing
    by_id = {u["id"]: u for u in dry["updated"] if u["provider"] == anthropic["slug"]}
    assert set(by_id) == {sonnet["id"], haiku["id"]}
    assert by_id[sonnet["id"]]["changes"] == {
        "input_price_per_mtok": {"old": 1, "new": 3},
        "output_price_per_mtok": {"old": 2, "new": 15},
        "cached_input_price_per_mtok": {"old": 0.1, "new": 0.3},
        "cache_write_price_per_mtok": {"old": None, "new": 3.75},
        "context_window": {"old": None, "new": 200000},
        "max_output_tokens": {"old": 100, "new": 64000},
    }
    assert any(u["entry"] == "not-in-the-catalogue" for u in dry["unknown"]) is False  # rows without entries: silent
    assert dry["created"] == []  # without ?provider= nothing is created

    real = _ok(_import(admin, None, dry_run=False))
    assert (real["dry_run"], real["applied"]) == (False, True)
    assert _without_run_flags(real) == _without_run_flags(dry)
    after = _rows(admin, anthropic["id"])
    for row_id, row in before.items():
        changes = by_id[row_id]["changes"] if row_id in by_id else {}
        expected = {f: changes[f]["new"] if f in changes else row[f] for f in ROW_FIELDS}
        assert {f: after[row_id][f] for f in ROW_FIELDS} == expected, row_id
    assert after[stranger["id"]] == before[stranger["id"]]

    again = _ok(_import(admin, None, dry_run=False))  # idempotent: nothing left to change
    assert (again["updated"], again["created"], again["applied"]) == ([], [], False)
    assert again["unchanged"] == dry["unchanged"] + len(dry["updated"])


def test_selected_provider_creates_inactive_rows(admin: httpx.Client) -> None:
    gemini = _provider(admin, "gemini")
    flash = _model(admin, gemini["id"], "gemini-2.5-flash")
    dry = _ok(_import(admin, gemini["slug"], dry_run=True))
    assert dry["provider"] == gemini["slug"]
    assert [u["entry"] for u in dry["updated"]] == ["gemini/gemini-2.5-flash"]
    created = {c["slug"]: c for c in dry["created"]}
    catalog = orjson.loads(CATALOG)
    chat = {
        k.removeprefix("gemini/")
        for k, v in catalog.items()
        if v.get("litellm_provider") == "gemini" and v.get("mode") == "chat" and "max_output_tokens" in v
    }
    assert set(created) == chat - {"gemini-2.5-flash"}
    real = _ok(_import(admin, gemini["slug"], dry_run=False))
    assert _without_run_flags(real) == _without_run_flags(dry)
    rows = list(_rows_all(admin, gemini["id"]).values())
    assert len(rows) == 1 + len(created)
    for r in rows:
        if r["id"] == flash["id"]:
            assert (r["input_price_per_mtok"], r["is_active"]) == (0.3, True)
            continue
        values = created[r["slug"]]["values"]
        assert r["is_active"] is False and r["upstream_model"] == r["slug"]
        assert {f: r[f] for f in values} == values
    assert _ok(_import(admin, gemini["slug"], dry_run=True))["created"] == []


def _rows_all(admin: httpx.Client, provider_id: str) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        page = _ok(admin.get("/v1/admin/models", params={"provider_id": provider_id, "limit": 100, "offset": offset}))
        rows.update({r["id"]: r for r in page["data"]})
        offset += len(page["data"])
        if not page["data"] or offset >= page["total"]:
            return rows


def test_malformed_entry_applies_nothing(admin: httpx.Client) -> None:
    openai = _provider(admin, "openai")
    good = _model(admin, openai["id"], "gpt-4o-mini")
    bad = _model(admin, openai["id"], "gpt-4o")
    catalog = orjson.loads(CATALOG)
    catalog["gpt-4o"] = {**catalog["gpt-4o"], "output_cost_per_token": "0.00001"}
    body = orjson.dumps(catalog)
    dry = _ok(_import(admin, openai["slug"], dry_run=True, body=body))
    assert dry["malformed"] == [
        {"entry": "gpt-4o", "field": "output_cost_per_token", "reason": 'must be a number of USD, got "0.00001"'}
    ]
    before = _rows(admin, openai["id"])
    refused = _import(admin, openai["slug"], dry_run=False, body=body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", "gpt-4o.output_cost_per_token")
    assert "nothing was applied" in error["message"]
    assert _rows(admin, openai["id"]) == before  # gpt-4o-mini's valid update was not applied either
    assert before[good["id"]]["input_price_per_mtok"] == 1 and before[bad["id"]]["output_price_per_mtok"] == 2


def test_auth_and_bad_requests(admin: httpx.Client, gateway: GatewayServer) -> None:
    anonymous = httpx.post(gateway.url + "/v1/admin/models/import", content=CATALOG)
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "invalid_api_key")
    platform = _ok(admin.post("/v1/admin/platforms", json={"name": "Acme"}), 201)
    as_platform = httpx.post(
        gateway.url + "/v1/admin/models/import",
        content=CATALOG,
        headers={"Authorization": f"Bearer {platform['api_key']['raw_key']}"},
    )
    assert as_platform.status_code == 403 and as_platform.json()["error"]["code"] == "wrong_key_type"
    cases = [
        ({"provider": "no-such-provider"}, CATALOG, "provider"),
        ({"dry_run": "maybe"}, CATALOG, "dry_run"),
        ({}, b"[1, 2]", None),
        ({}, b'{"url": "ftp://example.com/prices.json"}', "url"),
    ]
    for params, body, param in cases:
        response = admin.post(
            "/v1/admin/models/import", params=params, content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["param"] == param, response.text


@pytest.fixture
def catalog_url(tmp_path: Path) -> Iterator[str]:
    """The catalogue served over plain HTTP on loopback (the tests' settings allow private URLs, §11.5)."""
    (tmp_path / "prices.json").write_bytes(CATALOG)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/prices.json"
    server.shutdown()
    server.server_close()


def test_catalogue_by_url(admin: httpx.Client, catalog_url: str) -> None:
    xai = _provider(admin, "openai_compatible", slug=f"xai-{uuid.uuid4().hex[:4]}")
    # an openai_compatible provider matches the entries whose litellm_provider is its slug: none for this slug
    assert _ok(_import(admin, xai["slug"], dry_run=True, body=orjson.dumps({"url": catalog_url})))["updated"] == []
    anthropic = _provider(admin, "anthropic")
    opus = _model(admin, anthropic["id"], "claude-opus-4-5")
    report = _ok(_import(admin, anthropic["slug"], dry_run=True, body=orjson.dumps({"url": catalog_url})))
    assert [u["id"] for u in report["updated"]] == [opus["id"]]
    missing = _import(admin, None, dry_run=True, body=orjson.dumps({"url": catalog_url + ".missing"}))
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "url"
    assert "HTTP 404" in missing.json()["error"]["message"]


@pytest.mark.parametrize(
    "url", ["http://example.com/prices.json", "https://127.0.0.1/prices.json", "https://user:pw@example.com/p.json"]
)
async def test_source_applies_the_url_rules(url: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await HttpCatalogSource(allow_private=False).fetch(url)
    assert refused.value.param == "url"


def _cli(gateway: GatewayServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLWAY_")}
    env.update(
        {
            "TOLLWAY_DATABASE_URL": gateway.settings.database_url,
            "TOLLWAY_DATA_DIR": str(gateway.settings.data_dir),
            "TOLLWAY_ALLOW_PRIVATE_URLS": "true",
        }
    )
    return subprocess.run([TOLLWAY, "prices", "import", *args], env=env, capture_output=True, text=True, timeout=60)


def test_cli_dry_run_then_import(admin: httpx.Client, gateway: GatewayServer, tmp_path: Path) -> None:
    anthropic = _provider(admin, "anthropic")
    haiku = _model(admin, anthropic["id"], "claude-haiku-4-5", slug="haiku", input_price_per_mtok="7")
    dry = _cli(gateway, str(CATALOG_PATH), "--provider", anthropic["slug"], "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.strip().splitlines()
    head = f"update {anthropic['slug']}/haiku (entry claude-haiku-4-5): input_price_per_mtok 7 -> 1, "
    assert lines[0].startswith(head)
    assert any(line.startswith(f"create {anthropic['slug']}/claude-sonnet-4-5 ") for line in lines)
    assert lines[-1].endswith("dry run, nothing applied")
    assert _rows(admin, anthropic["id"])[haiku["id"]]["input_price_per_mtok"] == 7
    real = _cli(gateway, str(CATALOG_PATH), "--provider", anthropic["slug"])
    assert real.returncode == 0, real.stderr
    assert real.stdout.splitlines()[:-1] == lines[:-1] and real.stdout.strip().endswith(": applied")
    haiku_after = _rows_all(admin, anthropic["id"])[haiku["id"]]
    entry = orjson.loads(CATALOG)["claude-haiku-4-5"]
    expected = Decimal(str(entry["input_cost_per_token"])) * 10**6
    assert Decimal(str(haiku_after["input_price_per_mtok"])) == expected
    again = _cli(gateway, str(CATALOG_PATH), "--provider", anthropic["slug"])
    assert again.stdout.strip().splitlines()[-1].startswith("0 updated, 0 created")
    broken = tmp_path / "broken.json"
    broken.write_text('{"claude-haiku-4-5": {"litellm_provider": "anthropic", "input_cost_per_token": -1}}')
    blocked = _cli(gateway, str(broken), "--provider", anthropic["slug"])
    assert blocked.returncode == 1
    assert (
        "malformed claude-haiku-4-5.input_cost_per_token" in blocked.stdout and "nothing was applied" in blocked.stderr
    )
    unreadable = _cli(gateway, str(tmp_path / "absent.json"))
    assert unreadable.returncode == 2 and "absent.json" in unreadable.stderr


def _with_store(gateway: GatewayServer, use: Callable[[CatalogAdminStore], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(gateway.settings)
        try:
            return await use(CatalogAdminStore(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_rows_changed_after_planning_apply_nothing(admin: httpx.Client, gateway: GatewayServer) -> None:
    """The real run applies its plan only while every row still holds the values the plan read: a PATCH between
    planning and applying rolls the whole transaction back (the route then answers 400 'run it again')."""
    anthropic = _provider(admin, "anthropic")
    sonnet = _model(admin, anthropic["id"], "claude-sonnet-4-5")
    opus = _model(admin, anthropic["id"], "claude-opus-4-5")
    providers, rows = _with_store(gateway, lambda store: store.catalog_rows())
    selected = [p for p in providers if p.id == anthropic["id"]]
    plan = plan_import(parse_catalog(CATALOG), selected, rows, create=False)
    assert {u.row.id for u in plan.updates} == {sonnet["id"], opus["id"]}
    updates = [(u.row.id, {COLUMNS[n]: (c.old, c.new) for n, c in u.changes.items()}) for u in plan.updates]
    _ok(admin.patch(f"/v1/admin/models/{opus['id']}", json={"input_price_per_mtok": "9"}))
    before = _rows(admin, anthropic["id"])
    assert _with_store(gateway, lambda store: store.apply_model_changes(updates, [])) is False
    assert _rows(admin, anthropic["id"]) == before  # sonnet's update was rolled back with opus's
    sonnet_only = [u for u in updates if u[0] == sonnet["id"]]
    assert _with_store(gateway, lambda store: store.apply_model_changes(sonnet_only, [])) is True
    assert _rows(admin, anthropic["id"])[sonnet["id"]]["input_price_per_mtok"] == 3
