"""Settings: environment beats the TOML file beats defaults; invalid values name the variable (SPEC §13.1)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from tollway.settings import Settings, SettingsError, decode_secret_key, load_settings


def test_defaults() -> None:
    settings = Settings()
    assert settings.database_url == "sqlite:///./tollway.db"
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8080, 1)
    assert settings.webhook_retry_delays == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert settings.sqlalchemy_url == "sqlite+aiosqlite:///./tollway.db"


def test_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "tollway.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\nallow_private_urls = true\n')
    monkeypatch.setenv("TOLLWAY_PORT", "9100")
    settings = load_settings(str(config))
    assert settings.port == 9100
    assert settings.host == "0.0.0.0"
    assert settings.allow_private_urls is True
    assert "TOLLWAY_CONFIG" not in os.environ  # the file is this call's: later Settings() read no file
    assert Settings().host == "127.0.0.1"


@pytest.mark.parametrize("value", ["yes", "1", "true"])
def test_booleans(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLWAY_ALLOW_PRIVATE_URLS", value)
    assert Settings().allow_private_urls is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOLLWAY_ADMIN_KEY", "sk-admin_short"),
        ("TOLLWAY_PORT", "http"),
        ("TOLLWAY_SECRET_KEY", "abc"),
        ("TOLLWAY_DATABASE_URL", "mysql://x"),
    ],
)
def test_invalid_setting_names_the_variable(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


def test_secret_key_forms() -> None:
    raw = os.urandom(32)
    assert decode_secret_key(raw.hex()) == raw
    assert decode_secret_key(base64.b64encode(raw).decode()) == raw
    assert decode_secret_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    with pytest.raises(SettingsError):
        decode_secret_key("too-short")


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


def test_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(port=9123).public_base_url == "http://127.0.0.1:9123"
    monkeypatch.setenv("TOLLWAY_PUBLIC_URL", "https://tollway.example.com/")
    assert Settings().public_base_url == "https://tollway.example.com"
    assert Settings(public_url="https://gw.example.com/base").public_base_url == "https://gw.example.com/base"


@pytest.mark.parametrize(
    "value", ["tollway.example.com", "ftp://tollway.example.com", "https://a.example/?x=1", "https://u@a.example"]
)
def test_public_url_rules(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLWAY_PUBLIC_URL", value)
    with pytest.raises(SettingsError, match="TOLLWAY_PUBLIC_URL"):
        load_settings()
