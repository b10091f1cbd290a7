"""Issue 9.7: no web page can drive the sandbox (DNS rebinding, CSRF), and long polls cannot
starve the REST API. Against the real sandbox on loopback, with raw HTTP requests."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator

import pytest
import requests

from dialtone.sandbox.guard import is_loopback_host
from dialtone.sandbox.phone.api import MAX_LONG_POLLS
from dialtone.sandbox.phone.client import PhoneClient
from dialtone.sandbox.server import SandboxServer
from dialtone.sandbox.state import ACCOUNT_SID, AUTH_TOKEN

MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(with_carrier=True, time_scale=0.01).start()
    try:
        yield server
    finally:
        server.stop()


def raw(
    sandbox: SandboxServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    """One request with exactly these headers (Host included); status, Content-Type, body."""
    conn = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        answer = conn.getresponse()
        return answer.status, answer.getheader("Content-Type", ""), answer.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5055", True),
        ("127.0.0.1:5055", True),
        ("127.8.9.10", True),
        ("[::1]:5055", True),
        ("evil.example", False),
        ("evil.example:5055", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io", False),
        ("10.0.0.1:5055", False),
        ("[::1]:x", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize("path", [MESSAGES, "/_phone/info"])
def test_a_rebound_host_is_refused_with_a_plain_403(sandbox: SandboxServer, path: str) -> None:
    status, content_type, body = raw(sandbox, "GET", path, headers={"Host": "evil.example:80"})
    assert status == 403
    assert content_type.startswith("text/plain")
    assert "evil.example" in body
    status, _, _ = raw(sandbox, "GET", path)  # no Host at all
    assert status == 403


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:1"])
def test_a_foreign_origin_is_refused(sandbox: SandboxServer, origin: str) -> None:
    headers = {"Host": f"127.0.0.1:{sandbox.port}", "Origin": origin}
    payload = json.dumps({"body": "hi"}).encode()
    headers["Content-Type"] = "application/json"
    status, content_type, body = raw(sandbox, "POST", "/_phone/messages", payload, headers)
    assert (status, content_type.split(";")[0]) == (403, "text/plain")
    assert "Origin" in body
    assert sandbox.state.messages() == []


def test_the_sandboxs_own_origin_and_localhost_are_served(sandbox: SandboxServer) -> None:
    for host in (f"127.0.0.1:{sandbox.port}", f"localhost:{sandbox.port}"):
        headers = {"Host": host, "Origin": f"http://{host}"}
        assert raw(sandbox, "GET", "/_phone/info", headers=headers)[0] == 200


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"body": "hi"}'),  # what a cross-site fetch() may send without preflight
        ("application/x-www-form-urlencoded", b"body=hi"),  # what an HTML form posts
        ("", b'{"body": "hi"}'),
    ],
)
def test_the_phone_api_takes_only_json(
    sandbox: SandboxServer, content_type: str, body: bytes
) -> None:
    headers = {"Host": f"127.0.0.1:{sandbox.port}"}
    if content_type:
        headers["Content-Type"] = content_type
    status, _, answer = raw(sandbox, "POST", "/_phone/messages", body, headers)
    assert status == 415
    assert "application/json" in json.loads(answer)["error"]
    assert sandbox.state.messages() == []


def test_the_terminal_phones_client_sends_json_to_a_loopback_host(sandbox: SandboxServer) -> None:
    phone = PhoneClient(sandbox.url)
    assert phone.send_sms("hello").startswith("SM")
    assert PhoneClient(f"http://localhost:{sandbox.port}").info()["phone_number"]


def test_waiting_long_polls_do_not_stall_the_rest_api(sandbox: SandboxServer) -> None:
    assert sandbox.carrier is not None
    events = sandbox.carrier.events
    pollers = [
        threading.Thread(target=PhoneClient(sandbox.url, timeout=40).events, args=(30.0,))
        for _ in range(MAX_LONG_POLLS + 2)  # more than may wait at once
    ]
    for poller in pollers:
        poller.start()
    try:
        while events.waiting < MAX_LONG_POLLS:  # the pytest timeout bounds this wait
            threading.Event().wait(0.01)
        session = requests.Session()
        session.trust_env = False  # loopback: never through a proxy from the environment
        answer = session.get(
            sandbox.url + MESSAGES, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=10
        )  # generous: it must complete while the long polls wait, not be fast
        assert answer.status_code == 200
        assert events.waiting == MAX_LONG_POLLS  # they were still waiting meanwhile
    finally:
        events.add("wake")  # an event ends every long poll
        for poller in pollers:
            poller.join(timeout=10)
