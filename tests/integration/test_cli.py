"""The ``tollway`` command line as an operator meets it (SPEC §13.2): clear refusals naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TOLLWAY = str(Path(sys.executable).with_name("tollway"))


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOLLWAY_")}
    clean.update({"TOLLWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "TOLLWAY_DATA_DIR": str(tmp_path)})
    clean.update(env)
    return subprocess.run([TOLLWAY, *args], env=clean, capture_output=True, text=True, timeout=60)


def test_migrate_applies_and_is_repeatable(tmp_path: Path) -> None:
    first = _run(["migrate"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert _run(["migrate"], tmp_path).returncode == 0


def test_more_workers_without_redis_or_postgres_is_refused(tmp_path: Path) -> None:
    result = _run(["serve", "--workers", "2"], tmp_path)
    assert result.returncode != 0
    line = result.stderr.strip().splitlines()[-1]
    assert "Redis" in line and "PostgreSQL" in line


@pytest.mark.parametrize(
    ("name", "value"),
    [("TOLLWAY_ADMIN_KEY", "sk-admin_short"), ("TOLLWAY_PORT", "eighty"), ("TOLLWAY_SECRET_KEY", "nope")],
)
def test_invalid_setting_is_one_clear_line(tmp_path: Path, name: str, value: str) -> None:
    result = _run(["serve"], tmp_path, **{name: value})
    assert result.returncode != 0
    assert name in result.stderr.strip().splitlines()[-1]


def test_config_file_is_read(tmp_path: Path) -> None:
    config = tmp_path / "tollway.toml"
    config.write_text('admin_key = "too-short"\n')
    result = _run(["serve", "--config", str(config)], tmp_path)
    assert result.returncode != 0 and "TOLLWAY_ADMIN_KEY" in result.stderr


def test_rotate_admin_key_prints_a_new_key_once(tmp_path: Path) -> None:
    result = _run(["rotate-admin-key"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("Tollway operator key (shown once): sk-admin_")
    refused = _run(["rotate-admin-key"], tmp_path, TOLLWAY_ADMIN_KEY="sk-admin_" + "a" * 40)
    assert refused.returncode != 0 and "TOLLWAY_ADMIN_KEY" in refused.stderr
