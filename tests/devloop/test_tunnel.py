"""The ngrok tunnel: the real pyngrok driving the fake agent in tests/fake_ngrok."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from pyngrok.exception import PyngrokNgrokError, PyngrokNgrokHTTPError, PyngrokNgrokURLError

from dialtone.app import create_app
from dialtone.devloop import tunnel
from dialtone.devloop.tunnel import (
    NgrokAuthtokenError,
    NgrokDomainError,
    NgrokNotInstalled,
    NgrokSessionLimit,
    NgrokUnreachable,
    Tunnel,
    TunnelError,
    open_tunnel,
)
from dialtone.errors import SettingsError
from dialtone.settings import Settings
from dialtone.web.serving import make_server
from tests.conftest import AUTH_TOKEN
from tests.support.fake_ngrok import FakeNgrok, is_running
from tests.support.twilio_signing import sign

TOKEN = "fake-ngrok-authtoken-0123456789"
STATUS = {
    "MessageSid": "SM" + "0" * 32,
    "MessageStatus": "delivered",
    "AccountSid": "AC" + "1" * 32,
}


def open_fake(
    fake: FakeNgrok, port: int, *, domain: str | None = None, startup_timeout: int = 15
) -> Tunnel:
    return open_tunnel(
        port,
        authtoken=TOKEN,
        domain=domain,
        ngrok_path=fake.path,
        config_path=fake.config_path,
        startup_timeout=startup_timeout,
    )


def agent_stopped(fake: FakeNgrok) -> bool:
    """True if the fake agent was started and is no longer running."""
    pid = fake.pid()
    return pid is not None and not is_running(pid)


def post(base_url: str, path: str, params: dict[str, str], headers: dict[str, str]) -> int:
    """POST a form to base_url + path; the status code."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        body = urlencode(params)
        conn.request(
            "POST",
            path,
            body,
            {"Content-Type": "application/x-www-form-urlencoded", **headers},
        )
        return conn.getresponse().status
    finally:
        conn.close()


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.fixture
def serve_app() -> Iterator[Callable[[Settings, socket.socket], None]]:
    """Serve Dialtone's app on waitress on a given listening socket, in a thread."""
    servers = []

    def start(settings: Settings, sock: socket.socket) -> None:
        server = make_server(create_app(settings), settings, sockets=[sock])
        servers.append(server)
        threading.Thread(target=server.run, daemon=True).start()

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def echo_server() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """A local HTTP server that records the headers of every request it gets."""
    seen: list[dict[str, str]] = []

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_the_tunnel_is_https_and_close_stops_the_agent(fake_ngrok: FakeNgrok) -> None:
    t = open_fake(fake_ngrok, 5999)
    state = fake_ngrok.state()
    assert t.public_url.startswith("https://")
    assert t.public_url.endswith(".ngrok-free.app")
    assert t.port == 5999
    assert t.inspector_url == state["api_url"]
    # pyngrok started it as ngrok, with our config file and the token on the command line.
    assert state["argv"][:4] == ["start", "--none", "--log", "stdout"]
    assert state["argv"][state["argv"].index("--config") + 1] == str(fake_ngrok.config_path)
    assert state["authtoken"] is True
    assert list(state["endpoints"]) == [t.public_url]
    pid = fake_ngrok.pid()
    assert pid is not None
    assert is_running(pid)

    t.close()
    t.close()  # twice is fine
    assert t.closed
    assert agent_stopped(fake_ngrok)


def test_close_all_closes_every_tunnel(fake_ngrok: FakeNgrok) -> None:
    t = open_fake(fake_ngrok, 5998)
    tunnel.close_all()
    assert t.closed
    assert agent_stopped(fake_ngrok)


def test_the_public_side_adds_what_ngrok_adds(
    fake_ngrok: FakeNgrok, echo_server: tuple[int, list[dict[str, str]]]
) -> None:
    port, seen = echo_server
    with open_fake(fake_ngrok, port) as t:
        conn = http.client.HTTPConnection(urlsplit(fake_ngrok.forwarder(t.public_url)).netloc)
        # A client's own X-Forwarded-Proto/Host are replaced, as ngrok's edge does.
        conn.request("GET", "/x", headers={"X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil"})
        assert conn.getresponse().read() == b"ok"
        conn.close()
    host = urlsplit(t.public_url).hostname
    assert seen[0]["host"] == host
    assert seen[0]["x-forwarded-host"] == host
    assert seen[0]["x-forwarded-proto"] == "https"
    assert seen[0]["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.parametrize("mode", ["trusted proxy", "public url"])
def test_a_webhook_through_the_tunnel_passes_the_signature_check(
    fake_ngrok: FakeNgrok,
    settings: Settings,
    serve_app: Callable[[Settings, socket.socket], None],
    mode: str,
) -> None:
    sock = listening_socket()
    port = sock.getsockname()[1]
    t = open_fake(fake_ngrok, port)
    if mode == "trusted proxy":
        # No PUBLIC_URL: waitress rebuilds the https URL from the tunnel's X-Forwarded-* headers.
        app_settings = settings.with_overrides(public_url=None, trusted_proxy="127.0.0.1")
    else:
        app_settings = settings.with_overrides(public_url=t.public_url)
    serve_app(app_settings, sock)
    forwarder = fake_ngrok.forwarder(t.public_url)

    def status_for(signed_url: str) -> int:
        header = {"X-Twilio-Signature": sign(AUTH_TOKEN, signed_url, STATUS)}
        return post(forwarder, "/status", STATUS, header)

    assert status_for(t.public_url + "/status") == 204
    assert status_for(t.public_url.replace("https://", "http://") + "/status") == 403
    assert status_for(f"http://127.0.0.1:{port}/status") == 403
    assert status_for("https://elsewhere.example.com/status") == 403


def test_a_reserved_domain_is_the_public_url(
    fake_ngrok: FakeNgrok, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NGROK_DOMAINS", "dialtone-demo.ngrok.app")
    with open_fake(fake_ngrok, 5997, domain="https://Dialtone-Demo.ngrok.app/") as t:
        assert t.public_url == "https://dialtone-demo.ngrok.app"


def test_no_authtoken_is_explained_before_ngrok_starts(fake_ngrok: FakeNgrok) -> None:
    with pytest.raises(NgrokAuthtokenError) as caught:
        open_tunnel(5000, authtoken=None, **fake_ngrok.tunnel_options())
    message = str(caught.value)
    assert "NGROK_AUTHTOKEN is not set" in message
    assert "dashboard.ngrok.com" in message
    assert "--public-url" in message
    assert fake_ngrok.state() == {}  # the agent never ran


@pytest.mark.parametrize(
    ("fail", "error", "phrases"),
    [
        (
            "authtoken-required",
            NgrokAuthtokenError,
            ["ERR_NGROK_4018", "NGROK_AUTHTOKEN", "verified", "--public-url"],
        ),
        ("invalid-authtoken", NgrokAuthtokenError, ["ERR_NGROK_107", "rejected", "Copy it again"]),
        (
            "session-limit",
            NgrokSessionLimit,
            ["Another ngrok agent", "ERR_NGROK_108", "pgrep -a ngrok", "--public-url"],
        ),
    ],
)
def test_ngrok_session_failures_are_explained(
    fake_ngrok: FakeNgrok,
    monkeypatch: pytest.MonkeyPatch,
    fail: str,
    error: type[TunnelError],
    phrases: list[str],
) -> None:
    monkeypatch.setenv("FAKE_NGROK_FAIL", fail)
    with pytest.raises(error) as caught:
        open_fake(fake_ngrok, 5000)
    message = str(caught.value)
    for phrase in phrases:
        assert phrase in message
    assert TOKEN not in message
    assert "Traceback" not in message
    assert agent_stopped(fake_ngrok)


@pytest.mark.parametrize(
    ("domain", "phrases"),
    [
        ("other.ngrok.app", ["https://other.ngrok.app", "ERR_NGROK_319", "not reserved"]),
        ("taken.ngrok.app", ["ERR_NGROK_320", "different ngrok account"]),
    ],
)
def test_a_domain_not_on_the_account_is_explained(
    fake_ngrok: FakeNgrok, domain: str, phrases: list[str]
) -> None:
    with pytest.raises(NgrokDomainError) as caught:
        open_fake(fake_ngrok, 5000, domain=domain)
    for phrase in [*phrases, "NGROK_DOMAIN"]:
        assert phrase in str(caught.value)
    assert agent_stopped(fake_ngrok)  # the agent that refused it is stopped


def test_a_malformed_domain_is_refused_before_ngrok_starts(fake_ngrok: FakeNgrok) -> None:
    with pytest.raises(NgrokDomainError, match="is not a domain name"):
        open_fake(fake_ngrok, 5000, domain="my demo")
    assert fake_ngrok.state() == {}


def test_a_missing_binary_that_cannot_be_downloaded_is_explained(
    fake_ngrok: FakeNgrok, tmp_path: Path
) -> None:
    missing = tmp_path / "bin" / "ngrok"
    with pytest.raises(NgrokNotInstalled) as caught:
        open_tunnel(5000, authtoken=TOKEN, ngrok_path=missing, config_path=fake_ngrok.config_path)
    message = str(caught.value)
    for phrase in [str(missing), "could not download", "offline", "NGROK_PATH", "--public-url"]:
        assert phrase in message
    assert not missing.exists()


def test_ngrok_that_cannot_reach_its_servers_is_explained(
    fake_ngrok: FakeNgrok, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NGROK_FAIL", "offline")
    with pytest.raises(NgrokUnreachable) as caught:
        open_fake(fake_ngrok, 5000, startup_timeout=1)
    assert "could not reach ngrok's servers" in str(caught.value)
    assert "no such host" in str(caught.value)
    assert agent_stopped(fake_ngrok)


def test_an_unexpected_agent_api_error_is_summarised() -> None:
    body = json.dumps(
        {
            "error_code": 103,
            "status_code": 502,
            "msg": "failed to start tunnel",
            "details": {"err": "failed to start tunnel: something new.\r\n\r\nERR_NGROK_9999\r\n"},
        }
    )
    exc = PyngrokNgrokHTTPError("boom", "http://x/api/endpoints", 502, None, {}, body)
    error = tunnel.explain(exc, ngrok_path="/p/ngrok")
    assert type(error) is TunnelError
    assert "ngrok could not open the tunnel: failed to start tunnel: something new" in str(error)
    assert "https://ngrok.com/docs/errors/err_ngrok_9999" in str(error)


def test_a_startup_error_is_summarised_without_secrets() -> None:
    err = "something broke\\nYour authtoken: s3cret\\r\\n\\r\\nERR_NGROK_9998\\r\\n"
    exc = PyngrokNgrokError("The ngrok process errored on start: ...", [], err)
    error = tunnel.explain(exc, ngrok_path="/p/ngrok", authtoken="s3cret")
    assert "ngrok could not open the tunnel: something broke" in str(error)
    assert "s3cret" not in str(error)


def test_a_silent_agent_api_is_explained() -> None:
    exc = PyngrokNgrokURLError("ngrok client exception, URLError: timed out", "timed out")
    error = tunnel.explain(exc, ngrok_path="/p/ngrok")
    assert "stopped answering" in str(error)


def test_a_subprocess_uses_the_fake_agent_through_its_environment(
    fake_ngrok: FakeNgrok, tmp_path: Path
) -> None:
    # What `dialtone dev` does, as a real process: settings from the environment, then the tunnel.
    script = (
        "from dialtone.cli import load_settings\n"
        "from dialtone.devloop.tunnel import open_tunnel\n"
        "s = load_settings()\n"
        "t = open_tunnel(5000, authtoken=s.ngrok_authtoken, ngrok_path=s.ngrok_path)\n"
        "print(t.public_url)\n"
        "t.close()\n"
    )
    env = fake_ngrok.environ()
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("https://")
    assert (tmp_path / "xdg" / "ngrok" / "ngrok.yml").exists()  # not ~/.config/ngrok
    assert agent_stopped(fake_ngrok)


def test_ngrok_path_setting_must_exist(tmp_path: Path) -> None:
    binary = tmp_path / "ngrok"
    binary.write_text("")
    assert Settings.from_env({"NGROK_PATH": str(binary)}).ngrok_path == binary
    with pytest.raises(SettingsError, match="NGROK_PATH"):
        Settings.from_env({"NGROK_PATH": str(tmp_path / "nope")})
