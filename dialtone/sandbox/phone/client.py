"""A small client for the sandbox's phone API, used by the terminal phone and the tests.

phone = PhoneClient("http://127.0.0.1:5055")
phone.send_sms("hours")
reply = phone.wait_for(lambda e: e["type"] == "message")
sid = phone.call()
phone.wait_for(lambda e: e["type"] == "gather")
phone.digits("1")
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from dialtone.errors import DialtoneError

Event = dict[str, Any]


class SandboxUnavailable(DialtoneError):
    """Nothing answers at the sandbox URL (it is not running, or it is somewhere else)."""


class PhoneApiError(DialtoneError):
    """The phone API refused a request; the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PhoneClient:
    """The phone's side of the sandbox: text, call, press keys, answer, hang up, read events."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise DialtoneError(f"The sandbox URL must be http(s)://host:port, not {base_url!r}.")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # The sandbox is on this machine: never through http_proxy/https_proxy (common in
        # workshops), which would answer for it or not at all.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.last_event = 0  # the id of the newest event `events()` has returned

    # --- actions ----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The phone's number, the sandbox number, and the newest event id."""
        return self._request("GET", "/_phone/info")

    def send_sms(self, body: str, media: Iterable[str | tuple[str, str]] = ()) -> str:
        """Text the sandbox number; media are URLs or (url, content type) pairs. The new SID."""
        return str(self.text(body, media)["sid"])

    def text(self, body: str, media: Iterable[str | tuple[str, str]] = ()) -> dict[str, Any]:
        """`send_sms`, answering the sandbox's whole answer: sid, to, status, and a `notice`
        for the phone to show (why no reply will come), if any."""
        items = [
            {"url": item} if isinstance(item, str) else {"url": item[0], "content_type": item[1]}
            for item in media
        ]
        return dict(self._request("POST", "/_phone/messages", {"body": body, "media": items}))

    def call(self) -> str:
        """Call the sandbox number; the new call's SID."""
        return str(self._request("POST", "/_phone/calls", {})["sid"])

    def digits(self, keys: str, call_sid: str = "current") -> None:
        """Press keys on the current call (or on `call_sid`)."""
        self._request("POST", f"/_phone/calls/{call_sid}/digits", {"digits": keys})

    def answer(self, call_sid: str = "current") -> None:
        """Answer the call that is ringing the phone."""
        self._request("POST", f"/_phone/calls/{call_sid}/answer", {})

    def decline(self, call_sid: str = "current") -> None:
        """Decline the call that is ringing the phone."""
        self._request("POST", f"/_phone/calls/{call_sid}/decline", {})

    def hangup(self, call_sid: str = "current") -> None:
        """Hang up the current call."""
        self._request("POST", f"/_phone/calls/{call_sid}/hangup", {})

    def fail_messages(
        self,
        error_code: int,
        *,
        status: str | None = None,
        to: str | None = None,
        count: int = 1,
    ) -> dict[str, Any]:
        """Make the next `count` messages to `to` (default: this phone) fail with `error_code`."""
        payload = {"kind": "message", "error_code": error_code, "status": status, "count": count}
        return self._request("POST", "/_phone/failures", {**payload, "to": to})

    def fail_calls(self, status: str, *, to: str | None = None, count: int = 1) -> dict[str, Any]:
        """Make the next `count` calls to `to` (default: this phone) end busy/no-answer/failed."""
        payload = {"kind": "call", "status": status, "count": count, "to": to}
        return self._request("POST", "/_phone/failures", payload)

    def failures(self) -> dict[str, Any]:
        """The failures still planned: {"messages": [...], "calls": [...]}."""
        return self._request("GET", "/_phone/failures")

    # --- events -----------------------------------------------------------------------------

    def events(self, wait: float = 0.0, after: int | None = None) -> list[Event]:
        """Events after `after` (default: the last one seen), waiting up to `wait` s for one."""
        since = self.last_event if after is None else after
        answer = self._request(
            "GET", f"/_phone/events?after={since}&wait={wait:g}", timeout=self.timeout + wait
        )
        found: list[Event] = answer["events"]
        if answer.get("busy") and not found:
            time.sleep(min(wait, 0.2))  # enough readers are waiting already: do not spin
        if found:
            self.last_event = max(self.last_event, found[-1]["id"])
        return found

    def wait_for(self, match: Callable[[Event], bool], timeout: float = 5.0) -> Event:
        """The next event that `match`es (skipping others); TimeoutError after `timeout` s."""
        return self.collect(match, timeout)[-1]

    def collect(self, match: Callable[[Event], bool], timeout: float = 5.0) -> list[Event]:
        """Every event up to and including the next one that `match`es."""
        deadline = time.monotonic() + timeout
        seen: list[Event] = []
        while (left := deadline - time.monotonic()) > 0:
            for event in self.events(min(left, 1.0), after=seen[-1]["id"] if seen else None):
                seen.append(event)
                if match(event):
                    self.last_event = event["id"]  # later events are still there to read
                    return seen
        kinds = ", ".join(e["type"] for e in seen) or "nothing"
        raise TimeoutError(f"no matching phone event within {timeout:g} s; saw: {kinds}")

    # --- plumbing ---------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        # base_url is checked to be http(s) in __init__.
        req = urllib.request.Request(self.base_url + path, data=data, method=method)  # noqa: S310
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=timeout or self.timeout) as answer:
                result = json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise PhoneApiError(exc.code, _error_text(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SandboxUnavailable(
                f"The sandbox does not answer at {self.base_url} ({reason}). Start it with "
                "`make dev` (no Twilio credentials) or `make sandbox` in another terminal, or "
                "pass --sandbox URL if it runs elsewhere."
            ) from None
        except ValueError:  # a 2xx that is not JSON: something else answers there
            raise PhoneApiError(200, "The answer is not the phone API's JSON.") from None
        if not isinstance(result, dict):
            raise PhoneApiError(200, "The answer is not the phone API's JSON.")
        return result


def _error_text(exc: urllib.error.HTTPError) -> str:
    """The phone API's error message; for anything else (another server), its HTTP status."""
    try:
        error = json.loads(exc.read()).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, str) and error:
        return error
    return f"HTTP {exc.code} {exc.reason}"
