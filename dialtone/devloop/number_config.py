"""The Twilio number's webhook configuration: find it, back it up, point it, put it back.

The backup is written (atomically) before anything on the number changes, and is only removed
after a successful restore, so a crash, kill -9 or power loss never loses the original. A backup
found at start-up is the original: it is reused, never overwritten with tunnel URLs.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from dialtone.errors import DialtoneError
from dialtone.facts import AUTHENTICATION_FAILED
from dialtone.twilio_api import twilio_error

# Every field of an IncomingPhoneNumber that decides where Twilio sends requests. They are all
# saved and restored together, so a restore puts back exactly what was there.
WEBHOOK_FIELDS = (
    "voice_url",
    "voice_method",
    "voice_fallback_url",
    "voice_fallback_method",
    "status_callback",
    "status_callback_method",
    "sms_url",
    "sms_method",
    "sms_fallback_url",
    "sms_fallback_method",
)

BACKUP_DIR = Path(".dialtone")
INVALID_CREDENTIALS = AUTHENTICATION_FAILED


class NumberError(DialtoneError):
    """The number cannot be found or changed; the message says why and what to do."""


@dataclass(frozen=True)
class NumberConfig:
    """One number's webhook fields, as saved in a backup file."""

    sid: str
    phone_number: str
    account_sid: str
    fields: dict[str, str | None]
    saved_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_json(self) -> str:
        """The backup file's text."""
        return json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> NumberConfig:
        """Parse a backup file's text; ValueError if it is not one."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
            raise ValueError("not a Dialtone number backup")
        unknown = set(data["fields"]) - set(WEBHOOK_FIELDS)
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        return cls(
            sid=str(data["sid"]),
            phone_number=str(data["phone_number"]),
            account_sid=str(data["account_sid"]),
            fields=dict(data["fields"]),
            saved_at=str(data.get("saved_at", "")),
        )


def backup_path(phone_number: str, directory: Path = BACKUP_DIR) -> Path:
    """Where the backup of `phone_number` lives: one file per number."""
    return directory / f"number-{phone_number.lstrip('+')}.json"


def write_backup(config: NumberConfig, path: Path) -> None:
    """Write the backup atomically (temp file, fsync, rename): never a half-written backup."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(config.to_json())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_backup(path: Path) -> NumberConfig | None:
    """The backup at `path`, or None if there is none; NumberError if it is unreadable."""
    try:
        return NumberConfig.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError) as exc:
        raise NumberError(
            f"The backup {path} is damaged ({exc}). Check the number in the Twilio console, "
            f"then move the file away."
        ) from None


def unreachable(exc: requests.RequestException, phone_number: str) -> NumberError:
    """A one-paragraph NumberError for a Twilio API that cannot be reached."""
    host = urlsplit(getattr(exc.request, "url", "") or "").netloc or "Twilio's API"
    return NumberError(
        f"Could not reach {host} to look after {phone_number} ({type(exc).__name__}). Check the "
        "internet connection (and TWILIO_API_URL, if you set it); nothing was changed on the "
        "number. Without internet, leave the Twilio credentials out to use the local sandbox."
    )


def explain(exc: TwilioException, phone_number: str) -> NumberError:
    """A one-paragraph NumberError for a Twilio failure while finding or changing the number."""
    error = twilio_error(exc)
    code, message = error.code, error.message
    if code == INVALID_CREDENTIALS:
        return NumberError(
            "Twilio refused the credentials (error 20003). Check TWILIO_ACCOUNT_SID and "
            "TWILIO_AUTH_TOKEN in .env against https://console.twilio.com; nothing was changed."
        )
    return NumberError(
        f"Twilio refused a request about {phone_number}: {message}"
        + (f" (error {code})" if code else "")
        + ". Nothing was changed on the number."
    )


def find_number(client: Client, phone_number: str) -> Any:
    """The IncomingPhoneNumber for `phone_number` on the account; NumberError if absent."""
    try:
        found = client.incoming_phone_numbers.list(phone_number=phone_number, limit=2)
    except TwilioException as exc:
        raise explain(exc, phone_number) from None
    except requests.RequestException as exc:
        raise unreachable(exc, phone_number) from None
    if not found:
        raise NumberError(
            f"{phone_number} is not a number on this Twilio account. Check TWILIO_PHONE_NUMBER "
            "(E.164, like +15551234567) and that TWILIO_ACCOUNT_SID is the account that owns it."
        )
    return found[0]


def snapshot(number: Any, account_sid: str) -> NumberConfig:
    """The number's current webhook fields."""
    return NumberConfig(
        sid=number.sid,
        phone_number=number.phone_number,
        account_sid=account_sid,
        fields={name: getattr(number, name) for name in WEBHOOK_FIELDS},
    )


def pointing_at(
    base_url: str,
    *,
    voice: bool = True,
    sms: bool = True,
    voice_path: str = "/voice_url",
    sms_path: str = "/sms_url",
) -> dict[str, str]:
    """The field values that send the number's voice, SMS and status requests to `base_url`:
    calls to `voice_path`, texts to `sms_path`, status callbacks to /status."""
    changes: dict[str, str] = {}
    if voice:
        changes.update(
            voice_url=f"{base_url}{voice_path}",
            voice_method="POST",
            status_callback=f"{base_url}/status",
            status_callback_method="POST",
        )
    if sms:
        changes.update(sms_url=f"{base_url}{sms_path}", sms_method="POST")
    return changes


def diff(
    before: dict[str, str | None], changes: dict[str, str | None]
) -> list[tuple[str, str, str]]:
    """(field, old, new) for each field `changes` would really change."""
    return [
        (name, before.get(name) or "", value or "")
        for name, value in changes.items()
        if (before.get(name) or "") != (value or "")
    ]


def update(client: Client, config: NumberConfig, changes: dict[str, str | None]) -> None:
    """Apply `changes` to the number in one request (so it is never half-updated)."""
    if not changes:
        return
    # An empty URL clears that field on Twilio (how an unset original is put back); a method is
    # an enum that cannot be empty, so an unset method is left alone.
    params = {
        name: value or ""
        for name, value in changes.items()
        if value or not name.endswith("_method")
    }
    try:
        client.incoming_phone_numbers(config.sid).update(**params)
    except TwilioException as exc:
        raise explain(exc, config.phone_number) from None
    except requests.RequestException as exc:
        raise unreachable(exc, config.phone_number) from None


def check_backup(client: Client, original: NumberConfig) -> None:
    """NumberError unless the backup's account and number SID are those of the number Twilio
    has under its phone number, on the account of the credentials in use.

    A backup file is only text: one edited or taken from another account could otherwise send
    the update to whatever IncomingPhoneNumber SID it names.
    """
    number = find_number(client, original.phone_number)
    account_sid = getattr(number, "account_sid", None) or client.account_sid
    mismatches = []
    if original.account_sid != account_sid:
        mismatches.append(f"account {original.account_sid!r}, but the number is on {account_sid}")
    if original.sid != number.sid:
        mismatches.append(
            f"number SID {original.sid!r}, but {original.phone_number} is {number.sid}"
        )
    if mismatches:
        raise NumberError(
            f"The backup of {original.phone_number} does not match the number on Twilio: it names "
            + "; and ".join(mismatches)
            + ". It was made for another account or number, or has been edited, so nothing was "
            "changed. Check the number in the Twilio console and restore it there, or use a "
            "backup this account made."
        )


def restore(client: Client, original: NumberConfig) -> None:
    """Put every saved field back exactly as it was, once the backup is checked against the
    number Twilio has (check_backup)."""
    check_backup(client, original)
    update(client, original, dict(original.fields))
