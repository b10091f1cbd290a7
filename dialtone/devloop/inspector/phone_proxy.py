"""The sandbox's phone API, relayed for the browser phone (same origin, the inspector's token).

The page never talks to the sandbox itself: the sandbox's phone API keeps its own Host/Origin
rules, and the inspector forwards only the phone API's own paths, as JSON, to the sandbox this
dev loop started. The phone's events are read by one `PhoneFeed` thread (one long poll on the
sandbox, whatever the number of pages) and streamed to each page as server-sent events: the
sandbox serves its API with a handful of threads, which pages' own long polls would use up.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from dialtone.devloop.inspector.timeline import EventLog

PREFIX = "/_phone"
MAX_WAIT = 25  # under the page's fetch patience and the sandbox's own 30 s cap
# The phone API's paths: info, events, messages, calls, calls/<sid>/<action>.
ALLOWED = re.compile(
    r"^(info|messages|calls|calls/(current|CA[0-9a-f]{32})/(digits|answer|decline|hangup))$"
)


class PhoneProxy:
    """Forwards phone API requests to the sandbox at `sandbox_url`."""

    def __init__(self, sandbox_url: str) -> None:
        self.sandbox_url = sandbox_url.rstrip("/")
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def forward(
        self, method: str, path: str, query: dict[str, str], body: bytes | None
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) of the sandbox for `method` on the phone API's `path`."""
        if not ALLOWED.match(path):
            return 404, {"error": f"The phone API has no {path!r}."}
        return self._call(method, path, body)

    def events(self, after: int, wait: float) -> tuple[int, dict[str, Any]]:
        """The sandbox's phone events after `after`, waiting up to `wait` s for one."""
        return self._call("GET", f"events?after={after}&wait={min(wait, MAX_WAIT):g}", None)

    def _call(self, method: str, path: str, body: bytes | None) -> tuple[int, dict[str, Any]]:
        url = f"{self.sandbox_url}{PREFIX}/{path}"
        request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 (loopback)
        request.add_header("Accept", "application/json")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=MAX_WAIT + 5) as answer:
                return answer.status, _json(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except OSError as exc:
            return 502, {"error": f"The sandbox does not answer at {self.sandbox_url} ({exc})."}


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"error": "The sandbox's answer is not JSON."}
    return value if isinstance(value, dict) else {"error": "The sandbox's answer is not an object."}


class PhoneFeed(EventLog):
    """The sandbox's phone events, read by one background thread and kept for the pages."""

    def __init__(self, proxy: PhoneProxy, limit: int = 1000) -> None:
        super().__init__(limit)
        self.proxy = proxy
        self._thread = threading.Thread(target=self._follow, name="phone-feed", daemon=True)

    def start(self) -> None:
        """Start following the sandbox's events."""
        self._thread.start()

    def _follow(self) -> None:
        while not self._closed:
            status, answer = self.proxy.events(self._last, MAX_WAIT)
            found = answer.get("events") if status == 200 else None
            if not isinstance(found, list):
                time.sleep(1)  # the sandbox is restarting or gone; try again shortly
                continue
            self._append([e for e in found if isinstance(e, dict) and isinstance(e.get("id"), int)])
