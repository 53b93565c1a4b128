"""Settings: declared once, documented in the README, environment over TOML file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from doxa.settings import SETTINGS, SettingsError, load_settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [s.env for s in SETTINGS if f"`{s.env}`" not in text]
    assert missing == []


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.mqtt_url == "mqtt://127.0.0.1:1883"
    assert settings.database_url is None
    assert str(settings.home) == "var"
    assert settings.timezone.key == "Asia/Ho_Chi_Minh"
    assert settings.mqtt_subscriptions == (
        ("doxa/meters/+/reading", "native"),
        ("tele/+/SENSOR", "tasmota"),
    )


def test_toml_file_sets_keys_and_the_environment_wins(tmp_path: Path) -> None:
    config = tmp_path / "doxa.toml"
    config.write_text(
        'mqtt_url = "mqtt://broker.example:1884"\n'
        'DOXA_TIMEZONE = "UTC"\n'
        "poll_interval = 15\n"
        '[mqtt_subscriptions]\n"site/+/data" = "tasmota"\n'
    )
    settings = load_settings({"DOXA_CONFIG": str(config), "DOXA_TIMEZONE": "Asia/Bangkok"})
    assert settings.mqtt_url == "mqtt://broker.example:1884"
    assert settings.timezone.key == "Asia/Bangkok"
    assert settings.poll_interval == 15.0
    assert settings.mqtt_subscriptions == (("site/+/data", "tasmota"),)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DOXA_TIMEZONE": "Nowhere/City"}, "DOXA_TIMEZONE: unknown time zone"),
        ({"DOXA_POLL_INTERVAL": "-1"}, "DOXA_POLL_INTERVAL: must be a positive number"),
        ({"DOXA_MQTT_SUBSCRIPTIONS": "a/b=native"}, "needs exactly one '+'"),
        ({"DOXA_MQTT_SUBSCRIPTIONS": "a/+/b=json"}, "unknown payload format 'json'"),
        ({"DOXA_CONFIG": "/nonexistent/doxa.toml"}, "DOXA_CONFIG: cannot read"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(env)


def test_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "doxa.toml"
    config.write_text('mqtt_ur = "x"\n')
    with pytest.raises(SettingsError, match="unknown setting 'mqtt_ur'"):
        load_settings({"DOXA_CONFIG": str(config)})
