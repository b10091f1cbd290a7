"""Settings.from_env: typed values, defaults, and every problem reported at once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dialtone.errors import SettingsError
from dialtone.settings import Settings

GOOD = {
    "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
    "TWILIO_AUTH_TOKEN": "secret-token",
    "TWILIO_PHONE_NUMBER": "+15551234567",
    "PUBLIC_URL": "https://abc.ngrok.app/",
    "PORT": "8080",
    "ALLOWED_DESTINATIONS": "+15550000001, whatsapp:+447700900123",
    "VALIDATE_SIGNATURES": "yes",
    "RULES_FILE": "my-rules.toml",
}


def test_reads_typed_values() -> None:
    settings = Settings.from_env(GOOD)
    assert settings.account_sid == GOOD["TWILIO_ACCOUNT_SID"]
    assert settings.port == 8080
    assert settings.public_url == "https://abc.ngrok.app"  # trailing slash dropped
    assert settings.allowed_destinations == {"+15550000001", "whatsapp:+447700900123"}
    assert settings.validate_signatures is True
    assert settings.rules_file == Path("my-rules.toml")
    assert settings.has_credentials


def test_defaults_when_nothing_is_set() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 5000)
    assert settings.account_sid is None
    assert not settings.has_credentials
    assert settings.validate_signatures is True
    assert settings.rate_limit_per_minute == 30


def test_blank_values_count_as_unset() -> None:
    assert Settings.from_env({"PORT": "  ", "PUBLIC_URL": ""}).port == 5000


def test_every_problem_is_reported_together() -> None:
    bad = {
        "TWILIO_ACCOUNT_SID": "AC123",
        "TWILIO_PHONE_NUMBER": "555-1234",
        "PUBLIC_URL": "abc.ngrok.app",
        "PORT": "70000",
        "VALIDATE_SIGNATURES": "maybe",
        "API_TOKEN": "hunter2",
        "RATE_LIMIT_PER_MINUTE": "0",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(bad)
    problems = caught.value.problems
    names = [problem.split("=", 1)[0] for problem in problems]
    assert names == [
        "TWILIO_ACCOUNT_SID",
        "TWILIO_PHONE_NUMBER",
        "PUBLIC_URL",
        "PORT",
        "VALIDATE_SIGNATURES",
        "API_TOKEN",
        "RATE_LIMIT_PER_MINUTE",
    ]
    message = str(caught.value)
    assert "7 problem(s)" in message
    assert "hunter2" not in message
    assert "E.164" in message
    assert "32 hexadecimal" in message


def test_secrets_are_never_echoed_in_errors() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PORT": "x", "TWILIO_ACCOUNT_SID": "ACnot-a-sid"})
    assert "ACnot-a-sid" in str(caught.value)  # a SID is not secret, shown to help
    token = "tok-123-" + "x" * 32
    settings = Settings.from_env({"TWILIO_AUTH_TOKEN": "super-secret", "API_TOKEN": token})
    assert "super-secret" not in repr(settings)
    assert token not in repr(settings)


def test_public_url_with_query_is_refused() -> None:
    with pytest.raises(SettingsError, match="query string"):
        Settings.from_env({"PUBLIC_URL": "https://x.example.com/?a=1"})


def test_allow_list_entries_are_checked() -> None:
    with pytest.raises(SettingsError, match="'12345'"):
        Settings.from_env({"ALLOWED_DESTINATIONS": "+15550000001,12345"})


def test_settings_are_frozen() -> None:
    settings = Settings.from_env(GOOD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]
    assert settings.with_overrides(port=6000).port == 6000


def test_workers_default_to_one_and_must_be_positive() -> None:
    assert Settings.from_env({}).workers == 1
    assert Settings.from_env({"WORKERS": "2"}).workers == 2
    with pytest.raises(SettingsError, match="WORKERS"):
        Settings.from_env({"WORKERS": "0"})
