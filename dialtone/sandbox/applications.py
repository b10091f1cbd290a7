"""TwiML Applications on the sandbox account: a VoiceUrl (and friends) under an AP... SID.

A call created with `ApplicationSid` runs the application's VoiceUrl, as on Twilio, so an app
written against Twilio's Applications works in the sandbox. Only the voice fields are acted on;
the SMS fields are stored and shown.

    book = ApplicationBook(account_sid)
    app = book.create(friendly_name="IVR", voice_url="https://example.com/voice")
    book.get(app.sid).voice_url
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from dialtone.sandbox.resources import API_ROOT, API_VERSION, new_sid, rfc2822, utcnow

# Form parameter -> Application field, for create and update.
APPLICATION_PARAMS = {
    "FriendlyName": "friendly_name",
    "VoiceUrl": "voice_url",
    "VoiceMethod": "voice_method",
    "VoiceFallbackUrl": "voice_fallback_url",
    "VoiceFallbackMethod": "voice_fallback_method",
    "StatusCallback": "status_callback",
    "StatusCallbackMethod": "status_callback_method",
    "VoiceCallerIdLookup": "voice_caller_id_lookup",
    "SmsUrl": "sms_url",
    "SmsMethod": "sms_method",
    "SmsFallbackUrl": "sms_fallback_url",
    "SmsFallbackMethod": "sms_fallback_method",
    "SmsStatusCallback": "sms_status_callback",
    "MessageStatusCallback": "message_status_callback",
    "PublicApplicationConnectEnabled": "public_application_connect_enabled",
}


@dataclass
class Application:
    """One TwiML Application."""

    sid: str
    account_sid: str
    date_created: datetime
    date_updated: datetime
    friendly_name: str | None = None
    voice_url: str | None = None
    voice_method: str = "POST"
    voice_fallback_url: str | None = None
    voice_fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    voice_caller_id_lookup: bool = False
    sms_url: str | None = None
    sms_method: str = "POST"
    sms_fallback_url: str | None = None
    sms_fallback_method: str = "POST"
    sms_status_callback: str | None = None
    message_status_callback: str | None = None
    public_application_connect_enabled: bool = True

    def to_json(self) -> dict[str, Any]:
        """Twilio's JSON for this application (`api.v2010.account.application`)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(
            api_version=API_VERSION,
            date_created=rfc2822(self.date_created),
            date_updated=rfc2822(self.date_updated),
            uri=f"{API_ROOT}/{self.account_sid}/Applications/{self.sid}.json",
        )
        return data


class ApplicationBook:
    """The account's applications (thread-safe); records handed out are copies."""

    def __init__(self, account_sid: str, clock: Callable[[], datetime] = utcnow) -> None:
        self.account_sid = account_sid
        self.clock = clock
        self._lock = threading.Lock()
        self._apps: dict[str, Application] = {}

    def create(self, **values: Any) -> Application:
        """A new application with these fields (see APPLICATION_PARAMS)."""
        now = self.clock()
        app = Application(new_sid("AP"), self.account_sid, now, now, **values)
        with self._lock:
            self._apps[app.sid] = app
            return replace(app)

    def get(self, sid: str) -> Application | None:
        """The application with this SID, or None."""
        with self._lock:
            app = self._apps.get(sid)
            return replace(app) if app else None

    def all(self) -> list[Application]:
        """Every application, newest first."""
        with self._lock:
            return [replace(a) for a in reversed(self._apps.values())]

    def update(self, sid: str, **values: Any) -> Application | None:
        """Change an application's fields; None if there is no such application."""
        with self._lock:
            if sid not in self._apps:
                return None
            self._apps[sid] = replace(self._apps[sid], **values, date_updated=self.clock())
            return replace(self._apps[sid])

    def delete(self, sid: str) -> bool:
        """Remove an application; False if there was none."""
        with self._lock:
            return self._apps.pop(sid, None) is not None
