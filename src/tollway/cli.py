"""``tollway serve | migrate | rotate-admin-key | reconcile | prices import | fake-upstream | demo``: thin wrappers;
settings are read once here."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import signal
import sys
import tempfile
from types import FrameType
from typing import Any

from tollway.settings import Settings, SettingsError, load_settings


def _fail(message: str) -> None:
    print(f"tollway: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    config = getattr(args, "config", None)
    if config:
        os.environ["TOLLWAY_CONFIG"] = config  # the process's own: ``--workers N`` processes read the same file
    try:
        return load_settings(config, **overrides)
    except SettingsError as exc:
        _fail(str(exc))
        raise  # unreachable


def _check_scale_out(settings: Settings) -> None:
    if settings.workers > 1:
        missing = []
        if settings.redis_url is None:
            missing.append("Redis (TOLLWAY_REDIS_URL)")
        if settings.is_sqlite:
            missing.append("PostgreSQL (TOLLWAY_DATABASE_URL)")
        if missing:
            _fail(f"TOLLWAY_WORKERS={settings.workers} needs " + " and ".join(missing))


def _ensure_alone(settings: Settings) -> None:
    """Without Redis, limits live in this process: refuse to start next to another instance (SPEC §13.2)."""
    from tollway.storage.sql.db import create_engine
    from tollway.storage.sql.instances import InstanceStore
    from tollway.workers.heartbeat import AnotherInstanceRunning, ensure_alone

    async def check() -> None:
        engine = create_engine(settings)
        try:
            await ensure_alone(InstanceStore(engine))
        finally:
            await engine.dispose()

    try:
        asyncio.run(check())
    except AnotherInstanceRunning as exc:
        _fail(str(exc))


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return
    uvloop.install()


def cmd_migrate(args: argparse.Namespace) -> None:
    from tollway.storage.sql.migrate import upgrade

    settings = _settings(args)
    asyncio.run(upgrade(settings))
    print("migrations applied", flush=True)


def _exit_after_drain(_signum: int, _frame: FrameType | None) -> None:
    """uvicorn re-raises the SIGTERM it handled once it has shut down; the drain finished, so exit 0 (§14.3)."""
    raise SystemExit(0)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from tollway.observability.logs import configure_logging
    from tollway.serving import uvicorn_options
    from tollway.storage.sql.migrate import upgrade

    settings = _settings(args, host=args.host, port=args.port, workers=args.workers)
    configure_logging(settings)
    _check_scale_out(settings)
    asyncio.run(upgrade(settings))
    if settings.redis_url is None:
        _ensure_alone(settings)
    _install_uvloop()
    options = uvicorn_options(settings)
    signal.signal(signal.SIGTERM, _exit_after_drain)
    try:
        if settings.workers > 1:
            _serve_workers(settings, options)
        else:
            from tollway.app import create_app

            app = create_app(settings)
            _tune_gc()
            uvicorn.run(app, **options)
    except SettingsError as exc:
        _fail(str(exc))


def _tune_gc() -> None:
    """Once everything is imported: move the long-lived heap out of the collector's sight (``gc.freeze``) and
    collect the young generation less often. Full collections then scan only what requests allocate, which keeps
    them out of the tail latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _serve_workers(settings: Settings, options: dict[str, Any]) -> None:
    """N uvicorn workers; their metrics meet in a fresh per-run directory (prometheus-client multiprocess mode),
    which must be named in the environment before the workers import prometheus-client."""
    import uvicorn

    from tollway.observability.metrics import MULTIPROC_ENV

    directory = tempfile.mkdtemp(prefix="tollway-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        # Each worker process builds its own app from the same environment and configuration file.
        uvicorn.run("tollway.cli:app_factory", factory=True, workers=settings.workers, **options)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def app_factory() -> Any:
    """The ASGI app of one worker process of ``tollway serve --workers N``."""
    from tollway.app import create_app
    from tollway.observability.logs import configure_logging
    from tollway.observability.metrics import MULTIPROC_ENV, Metrics

    settings = load_settings()
    configure_logging(settings)  # a spawned worker starts with a fresh interpreter
    app = create_app(settings, Metrics(multiprocess_dir=os.environ.get(MULTIPROC_ENV)))
    _tune_gc()
    return app


def cmd_reconcile(args: argparse.Namespace) -> None:
    """SPEC §9.6: print the report as JSON; exit 1 when any difference exists."""
    import orjson

    from tollway.domain.reconciliation import ReconcileReport
    from tollway.storage.sql.db import create_engine
    from tollway.storage.sql.reconcile import reconcile

    settings = _settings(args)

    async def run() -> ReconcileReport:
        engine = create_engine(settings)
        try:
            return await reconcile(engine)
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(run())
    except OSError as exc:
        _fail(f"TOLLWAY_DATABASE_URL: cannot reach the database: {exc}")
        return
    print(orjson.dumps(report.body()).decode(), flush=True)
    if not report.ok:
        raise SystemExit(1)


def cmd_prices_import(args: argparse.Namespace) -> None:
    """SPEC §19: import LiteLLM's price catalogue from a file or an http(s) URL; print what changes (or would, with
    --dry-run). Exit 1 when malformed entries block it (nothing applied), 2 on unusable input."""
    from pathlib import Path

    from tollway.domain.price_catalog import CatalogError, parse_catalog, report_lines
    from tollway.errors import TollwayError
    from tollway.providers.price_catalog import HttpCatalogSource
    from tollway.services.management.price_import import ImportBlocked, ImportResult, PriceImport
    from tollway.storage.sql.catalog_admin import CatalogAdminStore
    from tollway.storage.sql.db import create_engine
    from tollway.storage.sql.migrate import upgrade

    settings = _settings(args)
    source: str = args.source
    is_url = source.startswith(("http://", "https://"))
    try:
        local = None if is_url else parse_catalog(Path(source).read_bytes())
    except (CatalogError, OSError) as exc:
        _fail(f"{source}: {exc}")
        return

    async def run() -> ImportResult:
        await upgrade(settings)
        engine = create_engine(settings)
        try:
            prices = PriceImport(CatalogAdminStore(engine), HttpCatalogSource(settings.allow_private_urls))
            catalog = await prices.fetch(source) if local is None else local
            return await prices.run(catalog, args.provider, dry_run=args.dry_run)
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(run())
    except ImportBlocked as blocked:
        for line in report_lines(blocked.result.plan, dry_run=False, applied=False):
            print(line, flush=True)
        print(f"tollway: {blocked.message}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except OSError as exc:
        _fail(f"TOLLWAY_DATABASE_URL: cannot reach the database: {exc}")
        return
    except TollwayError as exc:
        _fail(exc.message)
        return
    for line in report_lines(result.plan, dry_run=result.dry_run, applied=result.applied):
        print(line, flush=True)


def cmd_rotate_admin_key(args: argparse.Namespace) -> None:
    from tollway.services.bootstrap import rotate_operator_key
    from tollway.storage.sql.db import create_engine
    from tollway.storage.sql.keystore import KeyStore
    from tollway.storage.sql.migrate import upgrade

    settings = _settings(args)

    async def run() -> str:
        await upgrade(settings)
        engine = create_engine(settings)
        try:
            return await rotate_operator_key(settings, KeyStore(engine))
        finally:
            await engine.dispose()

    try:
        raw = asyncio.run(run())
    except SettingsError as exc:
        _fail(str(exc))
        return
    print(f"Tollway operator key (shown once): {raw}", file=sys.stderr, flush=True)


def cmd_fake_upstream(args: argparse.Namespace) -> None:
    from tollway.fake_upstream.server import main as fake_main

    fake_main(["--host", args.host, "--port", str(args.port)])


def cmd_demo(args: argparse.Namespace) -> None:
    from tollway.demo import DemoError, run_demo

    port = args.port
    if port is None:
        raw = os.environ.get("TOLLWAY_PORT", "").strip() or "8080"
        if not raw.isdigit() or int(raw) > 65535:
            _fail(f"TOLLWAY_PORT: {raw!r} is not a port number (0-65535)")
        port = int(raw)
    _install_uvloop()
    try:
        asyncio.run(run_demo(port, args.upstream_port, args.data_dir))
    except DemoError as exc:
        _fail(f"demo: {exc}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tollway", description="Tollway, the self-hosted LLM gateway.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="apply pending migrations, then serve the API")
    serve.add_argument("--config", help="TOML settings file (same keys as the TOLLWAY_ variables, lower-cased)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply pending database migrations and exit")
    migrate.add_argument("--config")
    migrate.set_defaults(func=cmd_migrate)

    rotate = sub.add_parser("rotate-admin-key", help="print a new operator key once; the old one stops working")
    rotate.add_argument("--config")
    rotate.set_defaults(func=cmd_rotate_admin_key)

    check = sub.add_parser("reconcile", help="recompute the money invariants (SPEC 9.6); exit 1 on any difference")
    check.add_argument("--config")
    check.set_defaults(func=cmd_reconcile)

    prices = sub.add_parser("prices", help="model-row prices")
    prices_sub = prices.add_subparsers(dest="prices_command", required=True)
    importer = prices_sub.add_parser(
        "import", help="create or update model rows from LiteLLM's model_prices_and_context_window.json (SPEC 19)"
    )
    importer.add_argument("source", metavar="PATH_OR_URL")
    importer.add_argument("--provider", metavar="SLUG", help="only this provider's rows (and create missing ones)")
    importer.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    importer.add_argument("--config")
    importer.set_defaults(func=cmd_prices_import)

    fake = sub.add_parser("fake-upstream", help="run the built-in scripted OpenAI-compatible provider")
    fake.add_argument("--config")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=9090)
    fake.set_defaults(func=cmd_fake_upstream)

    demo = sub.add_parser("demo", help="embedded gateway + fake upstream + a seeded demo platform (make run)")
    demo.add_argument("--port", type=int, default=None, help="the gateway's port (default: TOLLWAY_PORT, else 8080)")
    demo.add_argument("--upstream-port", type=int, default=0, help="the fake upstream's port (default: a free one)")
    demo.add_argument("--data-dir", default=".demo")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
