"""Typed, frozen settings read once from the environment.

Entry points load `.env` (python-dotenv) and then call `Settings.from_env()`; nothing else in
Dialtone reads the environment. Every invalid value is reported together in one `SettingsError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dialtone.errors import SettingsError
from dialtone.phone_numbers import DEFAULT_DENIED_PREFIXES, is_destination, is_e164

ACCOUNT_SID_RE = re.compile(r"^AC[0-9a-fA-F]{32}$")
MESSAGING_SERVICE_SID_RE = re.compile(r"^MG[0-9a-fA-F]{32}$")

MIN_API_TOKEN_CHARS = 32
MAKE_A_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'  # noqa: S105
PIN_RE = re.compile(r"^[0-9]{6,12}$")
PREFIX_RE = re.compile(r"^\+[0-9]{1,15}$")

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})

# Twilio's royalty-free hold music, the same file its own <Enqueue> examples use.
DEFAULT_SMS_LINK = "https://www.twilio.com/docs/voice/twiml"
DEFAULT_HOLD_MUSIC = "http://com.twilio.sounds.music.s3.amazonaws.com/MARKOVICHAMP-Borghestral.mp3"

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """Everything Dialtone can be told, with the environment variable that sets each field."""

    # Twilio account; absent credentials mean sandbox mode where that applies.
    account_sid: str | None = None  # TWILIO_ACCOUNT_SID
    auth_token: str | None = field(default=None, repr=False)  # TWILIO_AUTH_TOKEN
    phone_number: str | None = None  # TWILIO_PHONE_NUMBER
    messaging_service_sid: str | None = None  # TWILIO_MESSAGING_SERVICE_SID
    twilio_api_url: str | None = None  # TWILIO_API_URL (sandbox, mocks, tests)
    twilio_timeout: float = 10.0  # TWILIO_TIMEOUT, seconds per REST request

    # Serving.
    public_url: str | None = None  # PUBLIC_URL, the https base URL Twilio calls
    host: str = "127.0.0.1"  # HOST
    port: int = 5000  # PORT
    trusted_proxy: str | None = None  # TRUSTED_PROXY: proxy address(es) or "*"
    trusted_proxy_count: int = 1  # TRUSTED_PROXY_COUNT
    threads: int = 8  # THREADS, waitress worker threads (per instance)
    workers: int = 1  # WORKERS, instances `make serve` starts, sharing the port (one per core)
    max_body_bytes: int = 64 * 1024  # MAX_BODY_BYTES, larger requests get 413
    reuse_port: bool = False  # REUSE_PORT: share HOST:PORT with other instances (SO_REUSEPORT)
    connection_limit: int = 2000  # CONNECTION_LIMIT, open connections per instance
    channel_timeout: int = 120  # CHANNEL_TIMEOUT, seconds before an idle connection is closed
    request_timeout: float = 30.0  # REQUEST_TIMEOUT, seconds to send one whole request
    max_header_bytes: int = 16 * 1024  # MAX_HEADER_BYTES, larger request headers get 431
    log_level: str = "INFO"  # LOG_LEVEL

    # Security.
    validate_signatures: bool = True  # VALIDATE_SIGNATURES; false only for local experiments
    api_token: str | None = field(default=None, repr=False)  # API_TOKEN for the outbound API
    allowed_destinations: frozenset[str] = frozenset()  # ALLOWED_DESTINATIONS, empty = any
    rate_limit_per_minute: int = 30  # RATE_LIMIT_PER_MINUTE for the outbound API, per token
    # DENIED_PREFIXES: destinations refused without ALLOWED_DESTINATIONS (dialtone.bot.destinations)
    denied_prefixes: tuple[str, ...] = DEFAULT_DENIED_PREFIXES
    allow_high_risk_destinations: bool = False  # ALLOW_HIGH_RISK_DESTINATIONS, DENIED_PREFIXES off

    # Voice menu.
    say_voice: str = "Polly.Joanna"  # SAY_VOICE
    say_language: str = "en-US"  # SAY_LANGUAGE
    forward_to: str | None = None  # FORWARD_TO, the number menu option 4 dials
    blocked_callers: frozenset[str] = frozenset()  # BLOCKED_CALLERS, rejected outright
    agent_numbers: frozenset[str] = frozenset()  # AGENT_NUMBERS, may pick up callers on hold
    link_texts_per_hour: int = 3  # LINK_TEXTS_PER_HOUR, option 3's texts to one caller
    link_texts_total_per_hour: int = 30  # LINK_TEXTS_TOTAL_PER_HOUR, option 3's texts to anyone
    agent_pin: str | None = field(default=None, repr=False)  # AGENT_PIN; unset: no agent pickup
    hold_music_url: str = DEFAULT_HOLD_MUSIC  # HOLD_MUSIC_URL
    sms_link: str = DEFAULT_SMS_LINK  # SMS_LINK, texted by option 3
    menu_attempts: int = 3  # MENU_ATTEMPTS before hanging up on no input

    # Routes: where they are found, and which ones the number's webhooks point at.
    routes_dir: Path = Path("routes")  # ROUTES_DIR, the directory of route modules
    sms_path: str = "/sms_url"  # SMS_PATH, the route `make dev` points SmsUrl at
    voice_path: str = "/voice_url"  # VOICE_PATH, the route `make dev` points VoiceUrl at

    # SMS auto-reply.
    rules_file: Path = Path("rules.toml")  # RULES_FILE
    # SEND_OPT_OUT_CONFIRMATIONS: answer STOP and START with a confirmation from Dialtone. Off by
    # default: on long codes and toll-free numbers Twilio sends its own, and a reply to a number
    # that has just texted STOP fails with error 21610. On for short codes without a Messaging
    # Service, numbers with Twilio's STOP handling switched off, and the local sandbox.
    send_opt_out_confirmations: bool = False

    # The record (SQLite); the file and its directory are created on first start.
    database_path: Path = Path("var/dialtone.db")  # DATABASE_PATH
    # DATABASE_URL: postgresql://user:password@host:5432/dbname keeps the record in PostgreSQL
    # instead (shared by every instance, with the rate limits); DATABASE_PATH is then unused.
    database_url: str | None = field(default=None, repr=False)

    # Local sandbox (make dev without credentials, make sandbox, make phone).
    sandbox_port: int = 5055  # SANDBOX_PORT, where the sandbox listens on 127.0.0.1
    sandbox_url: str | None = None  # SANDBOX_URL, where `make phone` finds it (default: the port)
    # The inspector page make dev serves on 127.0.0.1 (another free port if this one is taken).
    inspector_port: int = 5057  # INSPECTOR_PORT

    # Tunnel (make dev).
    ngrok_authtoken: str | None = field(default=None, repr=False)  # NGROK_AUTHTOKEN
    ngrok_domain: str | None = None  # NGROK_DOMAIN, a reserved domain
    ngrok_path: Path | None = None  # NGROK_PATH, an ngrok binary instead of pyngrok's download

    @property
    def agents(self) -> frozenset[str]:
        """Who may pick up a caller on hold: AGENT_NUMBERS and FORWARD_TO."""
        return self.agent_numbers | ({self.forward_to} if self.forward_to else set())

    @property
    def has_credentials(self) -> bool:
        """True when a real (or sandbox-issued) account SID and auth token are configured."""
        return bool(self.account_sid and self.auth_token)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests, the dev loop setting PUBLIC_URL)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from `environ` (default `os.environ`); raise SettingsError on any problem."""
        reader = _Reader(os.environ if environ is None else environ)
        settings = cls(
            account_sid=reader.get("TWILIO_ACCOUNT_SID", _account_sid),
            auth_token=reader.get("TWILIO_AUTH_TOKEN"),
            phone_number=reader.get("TWILIO_PHONE_NUMBER", _e164),
            messaging_service_sid=reader.get("TWILIO_MESSAGING_SERVICE_SID", _messaging_sid),
            twilio_api_url=reader.get("TWILIO_API_URL", absolute_url),
            twilio_timeout=reader.get("TWILIO_TIMEOUT", _positive_float, 10.0),
            public_url=reader.get("PUBLIC_URL", absolute_url),
            host=reader.get("HOST", str, "127.0.0.1"),
            port=reader.get("PORT", _port, 5000),
            trusted_proxy=reader.get("TRUSTED_PROXY"),
            trusted_proxy_count=reader.get("TRUSTED_PROXY_COUNT", _positive_int, 1),
            threads=reader.get("THREADS", _thread_count, 8),
            workers=reader.get("WORKERS", _positive_int, 1),
            max_body_bytes=reader.get("MAX_BODY_BYTES", _positive_int, 64 * 1024),
            reuse_port=reader.get("REUSE_PORT", _bool, False),
            connection_limit=reader.get("CONNECTION_LIMIT", _positive_int, 2000),
            channel_timeout=reader.get("CHANNEL_TIMEOUT", _positive_int, 120),
            request_timeout=reader.get("REQUEST_TIMEOUT", _positive_float, 30.0),
            max_header_bytes=reader.get("MAX_HEADER_BYTES", _positive_int, 16 * 1024),
            log_level=reader.get("LOG_LEVEL", _log_level, "INFO"),
            validate_signatures=reader.get("VALIDATE_SIGNATURES", _bool, True),
            api_token=reader.get("API_TOKEN", _api_token),
            allowed_destinations=reader.get("ALLOWED_DESTINATIONS", _address_set, frozenset()),
            rate_limit_per_minute=reader.get("RATE_LIMIT_PER_MINUTE", _positive_int, 30),
            denied_prefixes=reader.get("DENIED_PREFIXES", _prefixes, DEFAULT_DENIED_PREFIXES),
            allow_high_risk_destinations=reader.get("ALLOW_HIGH_RISK_DESTINATIONS", _bool, False),
            say_voice=reader.get("SAY_VOICE", str, "Polly.Joanna"),
            say_language=reader.get("SAY_LANGUAGE", str, "en-US"),
            forward_to=reader.get("FORWARD_TO", _e164),
            blocked_callers=reader.get("BLOCKED_CALLERS", _address_set, frozenset()),
            agent_numbers=reader.get("AGENT_NUMBERS", _address_set, frozenset()),
            link_texts_per_hour=reader.get("LINK_TEXTS_PER_HOUR", _positive_int, 3),
            link_texts_total_per_hour=reader.get("LINK_TEXTS_TOTAL_PER_HOUR", _positive_int, 30),
            agent_pin=reader.get("AGENT_PIN", _pin),
            hold_music_url=reader.get("HOLD_MUSIC_URL", absolute_url, DEFAULT_HOLD_MUSIC),
            sms_link=reader.get("SMS_LINK", absolute_url, DEFAULT_SMS_LINK),
            menu_attempts=reader.get("MENU_ATTEMPTS", _positive_int, 3),
            routes_dir=reader.get("ROUTES_DIR", Path, Path("routes")),
            sms_path=reader.get("SMS_PATH", route_path, "/sms_url"),
            voice_path=reader.get("VOICE_PATH", route_path, "/voice_url"),
            rules_file=reader.get("RULES_FILE", Path, Path("rules.toml")),
            send_opt_out_confirmations=reader.get("SEND_OPT_OUT_CONFIRMATIONS", _bool, False),
            database_path=reader.get("DATABASE_PATH", Path, Path("var/dialtone.db")),
            database_url=reader.get("DATABASE_URL", _postgres_url),
            sandbox_port=reader.get("SANDBOX_PORT", _port, 5055),
            sandbox_url=reader.get("SANDBOX_URL", absolute_url),
            inspector_port=reader.get("INSPECTOR_PORT", _port, 5057),
            ngrok_authtoken=reader.get("NGROK_AUTHTOKEN"),
            ngrok_domain=reader.get("NGROK_DOMAIN"),
            ngrok_path=reader.get("NGROK_PATH", _existing_file),
        )
        if reader.problems:
            raise SettingsError(reader.problems)
        return settings


class _Reader:
    """Reads and converts variables, collecting every problem instead of stopping at the first."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def get(self, name: str, convert: Callable[[str], T] = str, default: Any = None) -> Any:  # type: ignore[assignment]
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            return convert(raw)
        except ValueError as exc:
            self.problems.append(f"{name}={_shown(name, raw)}: {exc}")
            return default


def _shown(name: str, raw: str) -> str:
    """The value as it may appear in an error: secrets are never echoed."""
    if (
        any(word in name for word in ("TOKEN", "SECRET", "PASSWORD", "PIN"))
        or name == "DATABASE_URL"
    ):
        return "(hidden)"
    return repr(raw) if len(raw) <= 80 else repr(raw[:77] + "...")


def _postgres_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(
            "DATABASE_URL must be a postgresql://user:password@host:5432/dbname URL; leave it "
            "empty to keep the record in SQLite at DATABASE_PATH"
        )
    if parts.netloc.count("@") > 1:
        # libpq would take the password's tail for the host, and print it in its error.
        raise ValueError(
            "the user name or password in DATABASE_URL holds an '@': write it as %40 (and ':' "
            "as %3A, '/' as %2F), as URLs need"
        )
    return raw


def _account_sid(raw: str) -> str:
    if not ACCOUNT_SID_RE.match(raw):
        raise ValueError("an Account SID is 'AC' followed by 32 hexadecimal characters")
    return raw


def _messaging_sid(raw: str) -> str:
    if not MESSAGING_SERVICE_SID_RE.match(raw):
        raise ValueError("a Messaging Service SID is 'MG' followed by 32 hexadecimal characters")
    return raw


def _api_token(raw: str) -> str:
    if len(raw) < MIN_API_TOKEN_CHARS:
        raise ValueError(
            f"API_TOKEN is {len(raw)} characters; it must be at least {MIN_API_TOKEN_CHARS}, "
            "random, so that nobody can guess it. Make one with "
            f"{MAKE_A_TOKEN} and put it in .env as API_TOKEN=..."
        )
    return raw


def _pin(raw: str) -> str:
    if not PIN_RE.match(raw):
        raise ValueError("a PIN is 6 to 12 digits (callers key it in after pressing 9)")
    return raw


def _prefixes(raw: str) -> tuple[str, ...]:
    """A comma-separated list of number prefixes like +1900,+882; "none" for an empty list."""
    if raw.lower() == "none":
        return ()
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    bad = [item for item in items if not PREFIX_RE.match(item)]
    if bad:
        raise ValueError(
            "every entry must be a '+' and digits, like +1900 or +882 (or the list is none); not "
            + ", ".join(repr(b) for b in bad)
        )
    return items


def _e164(raw: str) -> str:
    if not is_e164(raw):
        raise ValueError("a phone number must be in E.164 form, like +15551234567")
    return raw


def absolute_url(raw: str) -> str:
    """`raw` as a base URL (no trailing slash); ValueError saying what is wrong with it."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL, like https://example.ngrok.app")
    if parts.query or parts.fragment or "?" in raw or "#" in raw:
        raise ValueError("must not have a query string or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password")
    try:
        parts.port  # noqa: B018 (urlsplit checks the port only when asked)
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    return raw.rstrip("/")


def route_path(raw: str) -> str:
    """A route's path, like /sms_url: starts with '/', no query, fragment or space."""
    if not raw.startswith("/") or raw.startswith("//"):
        raise ValueError("a route path starts with a single '/', like /sms_url")
    if any(c in raw for c in "?# ") or not raw.isprintable():
        raise ValueError("a route path has no query string, fragment or spaces")
    return raw.rstrip("/") or "/"


def _existing_file(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ValueError("no such file; give the full path to the ngrok program")
    return path


def _port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ValueError("a port is a whole number from 1 to 65535") from None
    if not 1 <= port <= 65535:
        raise ValueError("a port is a whole number from 1 to 65535")
    return port


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("must be a whole number greater than 0") from None
    if value < 1:
        raise ValueError("must be a whole number greater than 0")
    return value


def _thread_count(raw: str) -> int:
    value = _positive_int(raw)
    if value > 256:
        raise ValueError("must be at most 256 (each thread is a real OS thread)")
    return value


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number of seconds greater than 0") from None
    if not 0 < value < 3600:
        raise ValueError("must be a number of seconds greater than 0 (and under an hour)")
    return value


def _bool(raw: str) -> bool:
    word = raw.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("must be true or false")


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


def _address_set(raw: str) -> frozenset[str]:
    """A comma-separated list of E.164 numbers or whatsapp: addresses."""
    items = [item.strip() for item in raw.split(",") if item.strip()]
    bad = [item for item in items if not is_destination(item)]
    if bad:
        raise ValueError(
            "every entry must be an E.164 number or a whatsapp: address; not "
            + ", ".join(repr(b) for b in bad)
        )
    return frozenset(items)
