"""Twilio's webhook connection overrides: `#ct=...&rt=...&tt=...&rc=...&rp=...` on a webhook URL.

Twilio reads these from the URL's fragment, never sends the fragment, and does not sign it
(Twilio's "Webhook connection overrides" page). The sandbox understands:

- `ct`: connect timeout, ms (100-10000); `rt`: read timeout, ms, and `tt`: total time, ms
  (100-15000; the sandbox applies the smaller of the two to the whole exchange);
- `rc`: retry count (0-5) and `rp`: retry policy, comma-separated: `ct` (connection failures),
  `rt` (timeouts), `4xx`, `5xx` or `all` (default `ct`).

`e` (edge) and `sni` are accepted and ignored: the sandbox has no edges and does not do TLS
differently. Values out of range are clamped; unknown keys are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from dialtone.sandbox.carrier.webhook_errors import TwilioFailure

CONNECT_CODES = frozenset({11201, 11202, 11210})  # no connection was made


@dataclass(frozen=True)
class Overrides:
    """The overrides of one webhook URL (None: the client's own setting)."""

    connect_timeout: float | None = None  # seconds
    total_timeout: float | None = None  # seconds
    retries: int = 0
    policy: frozenset[str] = frozenset({"ct"})

    def retry_on(self, failure: TwilioFailure) -> bool:
        """True when the retry policy covers this failure."""
        code, status = failure.notice.code, failure.http_status
        kinds = {"all"}
        if code in CONNECT_CODES:
            kinds.add("ct")
        elif code == 11205:
            kinds.add("rt")
        elif status is not None:
            kinds.add(f"{status // 100}xx")
        return bool(kinds & self.policy) if "all" not in self.policy else True


def split_overrides(url: str) -> tuple[str, Overrides]:
    """The URL without its fragment, and the connection overrides the fragment held."""
    parts = urlsplit(url)
    if not parts.fragment:
        return url, Overrides()
    values = dict(parse_qsl(parts.fragment))
    bare = urlunsplit(parts._replace(fragment=""))
    read = _ms(values.get("rt"), 15000)
    total = _ms(values.get("tt"), 15000)
    limits = [t for t in (read, total) if t is not None]
    policy = frozenset(p.strip().lower() for p in values.get("rp", "ct").split(",") if p.strip())
    return bare, Overrides(
        connect_timeout=_ms(values.get("ct"), 10000),
        total_timeout=min(limits) if limits else None,
        retries=_int(values.get("rc"), 0, 5),
        policy=policy or frozenset({"ct"}),
    )


def _ms(raw: str | None, high: int) -> float | None:
    value = _int(raw, 100, high) if raw else None
    return value / 1000 if value else None


def _int(raw: str | None, low: int, high: int) -> int:
    try:
        return min(max(int(raw or low), low), high)
    except ValueError:
        return low
