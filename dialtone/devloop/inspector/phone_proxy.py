"""The sandbox's phone API, relayed for the browser phone (same origin, the inspector's token).

The page never talks to the sandbox itself: the sandbox's phone API keeps its own Host/Origin
rules, and the inspector forwards only the phone API's own paths, as JSON, to the sandbox this
dev loop started.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

PREFIX = "/_phone"
MAX_WAIT = 25  # under the page's fetch patience and the sandbox's own 30 s cap
# The phone API's paths: info, events, messages, calls, calls/<sid>/<action>.
ALLOWED = re.compile(
    r"^(info|events|messages|calls|calls/(current|CA[0-9a-f]{32})/(digits|answer|decline|hangup))$"
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
        suffix = ""
        if path == "events":
            after = query.get("after", "0")
            wait = query.get("wait", "0")
            if not after.isdigit() or not wait.replace(".", "", 1).isdigit():
                return 400, {"error": "after and wait must be numbers."}
            suffix = f"?after={after}&wait={min(float(wait), MAX_WAIT):g}"
        url = f"{self.sandbox_url}{PREFIX}/{path}{suffix}"
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
