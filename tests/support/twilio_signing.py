"""Sign requests the way Twilio does, with the real RequestValidator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from twilio.request_validator import RequestValidator

Params = Mapping[str, str] | Sequence[tuple[str, str]]


class _Multi(dict[str, list[str]]):
    def getall(self, key: str) -> list[str]:
        return self[key]


def sign(auth_token: str, url: str, params: Params) -> str:
    """The X-Twilio-Signature Twilio would send for a form POST of `params` to `url`."""
    items = params.items() if isinstance(params, Mapping) else params
    multi = _Multi()
    for key, value in items:
        multi.setdefault(key, []).append(value)
    return RequestValidator(auth_token).compute_signature(url, multi)
