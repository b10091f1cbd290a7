"""An inbound SMS/MMS webhook as a plain value: what the reply builder and the record need."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dialtone.facts import MAX_MEDIA
from dialtone.record.rows import Media  # the record's own: URL and content type


@dataclass(frozen=True)
class InboundMessage:
    """The fields of Twilio's inbound message webhook that Dialtone uses."""

    sid: str
    sender: str
    to: str
    body: str
    media: tuple[Media, ...] = ()

    @property
    def media_types(self) -> list[str]:
        """The attachments' MIME types, in order."""
        return [item.content_type for item in self.media]

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> InboundMessage:
        """Read a webhook form; ValueError (a 400 for the route) if NumMedia is not 0 to 10."""
        raw = (form.get("NumMedia") or "0").strip()
        if not raw.isdecimal() or int(raw) > MAX_MEDIA:
            raise ValueError(f"NumMedia must be a whole number from 0 to {MAX_MEDIA}.")
        media = tuple(
            Media(form.get(f"MediaUrl{i}") or "", form.get(f"MediaContentType{i}") or "")
            for i in range(int(raw))
        )
        return cls(
            sid=form.get("MessageSid") or form.get("SmsSid") or "",
            sender=form.get("From") or "",
            to=form.get("To") or "",
            body=form.get("Body") or "",
            media=media,
        )
