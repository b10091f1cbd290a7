"""The small pieces the voice engine is built from: where a call goes next, and its parameters."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from dialtone.sandbox.carrier.call_peer import CallInfo
from dialtone.sandbox.carrier.messaging import API_VERSION, country_of
from dialtone.sandbox.carrier.webhook_client import Hook


@dataclass(frozen=True)
class Next:
    """Fetch the TwiML at `hook` next, with `extra` parameters."""

    hook: Hook
    extra: Mapping[str, str] = field(default_factory=dict)
    user_input: bool = False  # resets the redirect-loop counter


@dataclass(frozen=True)
class End:
    """The call ends with `status`; `reason` is shown to the phone."""

    status: str
    reason: str


Outcome = Next | End | None  # None: carry on with the next verb


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + uuid.uuid4().hex


def voice_params(
    info: CallInfo, status: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Twilio's voice webhook parameters for a call in `status`, plus `extra`."""
    params = {
        "CallSid": info.call_sid,
        "AccountSid": info.account_sid,
        "From": info.from_,
        "To": info.to,
        "Caller": info.from_,
        "Called": info.to,
        "CallStatus": status,
        "Direction": info.direction,
        "ApiVersion": API_VERSION,
    }
    parties = (("From", info.from_), ("Caller", info.from_), ("To", info.to), ("Called", info.to))
    for prefix, number in parties:
        params.update({f"{prefix}City": "", f"{prefix}State": "", f"{prefix}Zip": ""})
        params[f"{prefix}Country"] = country_of(number)
    params.update(extra or {})
    return params
