"""`make dev` with an account: `python -m dialtone dev` as a real subprocess, the sandbox as Twilio, and the
real pyngrok driving the fake ngrok agent."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dialtone.devloop.console import Banner, print_banner
from dialtone.devloop.number_config import backup_path
from dialtone.devloop.sandbox import app_settings
from dialtone.sandbox.phone.client import PhoneClient
from dialtone.sandbox.server import SandboxServer
from tests.conftest import REPO
from tests.support.dev_process import DevProcess
from tests.support.fake_ngrok import FakeNgrok, is_running
from tests.support.hello_route import HELLO_ROUTE, copy_routes
from tests.support.live_server import free_socket, urlopen
from tests.support.sandbox_fixtures import configure_number, number_webhooks
from tests.support.server_process import child_pids
from tests.support.twilio_signing import sign

ORIGINAL = {
    "voice_url": "https://old.example.com/voice",
    "voice_method": "GET",
    "sms_url": "https://old.example.com/sms",
    "sms_method": "POST",
    "status_callback": "https://old.example.com/status",
    "status_callback_method": "POST",
    "voice_fallback_url": "https://old.example.com/fallback",
    "voice_fallback_method": "POST",
}


def free_port() -> int:
    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@pytest.fixture
def number_fields(sandbox: SandboxServer) -> dict[str, str]:
    """The sandbox number set up as a developer's number might be; its fields."""
    return configure_number(sandbox, **ORIGINAL)


@pytest.fixture
def dev_env(sandbox: SandboxServer, fake_ngrok: FakeNgrok, tmp_path: Path) -> dict[str, str]:
    """The environment of a developer with an account (the sandbox) and ngrok (the fake)."""
    env = fake_ngrok.environ()
    for name in list(env):
        if name.startswith(("TWILIO_", "PUBLIC_URL", "API_TOKEN")):
            del env[name]
    settings = app_settings(sandbox)
    env.update(
        TWILIO_ACCOUNT_SID=str(settings.account_sid),
        TWILIO_AUTH_TOKEN=str(settings.auth_token),
        TWILIO_PHONE_NUMBER=str(settings.phone_number),
        TWILIO_API_URL=sandbox.url,
        PORT=str(free_port()),
        RULES_FILE=str(REPO / "rules.toml"),
        ROUTES_DIR=str(REPO / "routes"),
        DATABASE_PATH=str(tmp_path / "dialtone.db"),
    )
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Where the developer runs make dev (the backup goes in .dialtone/ here)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@contextmanager
def dev_running(env: dict[str, str], workdir: Path, *args: str) -> Iterator[DevProcess]:
    """dev.py started and ready; whatever is left of it is killed afterwards."""
    process = DevProcess(env, workdir, *args)
    try:
        process.wait_for("Ready in")
        yield process
    finally:
        process.kill_group()


@pytest.fixture
def dev(dev_env: dict[str, str], workdir: Path) -> Iterator[DevProcess]:
    process = DevProcess(dev_env, workdir, TUNNEL)
    yield process
    process.kill_group()


def public_url_of(process: DevProcess) -> str:
    match = re.search(r"Public URL\s+(https://\S+)", process.output)
    assert match, process.output
    return match.group(1)


def post_through_tunnel(
    fake_ngrok: FakeNgrok, public_url: str, path: str, params: dict[str, str], token: str
) -> tuple[int, str]:
    """POST a form to the public URL as Twilio would (signed for it), through the fake agent."""
    data = urllib.parse.urlencode(params).encode()
    request = urllib.request.Request(
        fake_ngrok.forwarder(public_url) + path,
        data=data,
        headers={"X-Twilio-Signature": sign(token, public_url + path, params)},
    )
    try:
        with urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


# The sandbox plays Twilio on loopback here; a real account would open the tunnel by itself.
TUNNEL = "--tunnel"

SMS = {
    "MessageSid": "SM" + "a" * 32,
    "AccountSid": "AC" + "0" * 32,
    "From": "+15557654321",
    "To": "+15005550006",
    "Body": "hours",
    "NumMedia": "0",
}


def test_points_the_number_serves_through_the_tunnel_and_restores_on_ctrl_c(
    dev: DevProcess,
    sandbox: SandboxServer,
    fake_ngrok: FakeNgrok,
    number_fields: dict[str, str],
    dev_env: dict[str, str],
    workdir: Path,
) -> None:
    dev.wait_for("Ready in")
    public = public_url_of(dev)
    assert public.startswith("https://")
    now = number_webhooks(sandbox)
    assert now["sms_url"] == public + "/sms_url"
    assert now["voice_url"] == public + "/voice_url"
    assert now["status_callback"] == public + "/status"
    assert now["voice_fallback_url"] == ORIGINAL["voice_fallback_url"]
    assert backup_path(dev_env["TWILIO_PHONE_NUMBER"], workdir / ".dialtone").exists()

    status, body = post_through_tunnel(
        fake_ngrok, public, "/sms_url", SMS, dev_env["TWILIO_AUTH_TOKEN"]
    )
    assert status == 200, body
    assert "<Message>" in body
    dev.wait_for("/sms_url")  # the request log line
    forged, _ = post_through_tunnel(fake_ngrok, public, "/sms_url", SMS, "not-the-token")
    assert forged == 403
    dev.wait_for("rejected")

    agent = fake_ngrok.pid()
    assert dev.stop(signal.SIGINT) == 0
    assert number_webhooks(sandbox) == number_fields
    assert not (workdir / ".dialtone" / "number-15005550006.json").exists()
    assert agent is not None
    assert not is_running(agent) or _is_zombie(agent)
    assert "The number is back as it was" in dev.output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_sigterm_and_a_closed_terminal_restore_too(
    dev: DevProcess, sandbox: SandboxServer, number_fields: dict[str, str], signum: int
) -> None:
    dev.wait_for("Ready in")
    assert dev.stop(signum) == 0
    assert number_webhooks(sandbox) == number_fields


@pytest.mark.parametrize(
    ("flag", "changed", "left"),
    [("--sms-only", "sms_url", "voice_url"), ("--voice-only", "voice_url", "sms_url")],
)
def test_only_one_webhook(
    dev_env: dict[str, str],
    workdir: Path,
    sandbox: SandboxServer,
    number_fields: dict[str, str],
    flag: str,
    changed: str,
    left: str,
) -> None:
    with dev_running(dev_env, workdir, TUNNEL, flag) as process:
        now = number_webhooks(sandbox)
        assert now[left] == ORIGINAL[left]
        assert now[changed].endswith("/" + changed)
        assert now[changed] != ORIGINAL[changed]
        assert process.stop() == 0
        assert number_webhooks(sandbox) == number_fields


def test_public_url_flag_skips_ngrok(
    dev_env: dict[str, str],
    workdir: Path,
    sandbox: SandboxServer,
    number_fields: dict[str, str],
    fake_ngrok: FakeNgrok,
) -> None:
    with dev_running(dev_env, workdir, "--public-url", "https://my-tunnel.example.com") as process:
        assert number_webhooks(sandbox)["sms_url"] == "https://my-tunnel.example.com/sms_url"
        assert fake_ngrok.pid() is None
        assert process.stop() == 0
        assert number_webhooks(sandbox) == number_fields


def test_after_kill_9_make_restore_puts_the_number_back_and_the_next_run_reuses_the_backup(
    dev: DevProcess,
    sandbox: SandboxServer,
    number_fields: dict[str, str],
    dev_env: dict[str, str],
    workdir: Path,
) -> None:
    dev.wait_for("Ready in")
    dev.kill_group()  # SIGKILL: no chance to restore
    backup = backup_path(dev_env["TWILIO_PHONE_NUMBER"], workdir / ".dialtone")
    assert backup.exists()
    assert number_webhooks(sandbox) != number_fields
    saved = backup.read_text()

    # The next make dev notices the backup and keeps it as the original.
    again = DevProcess(dev_env, workdir, TUNNEL)
    try:
        again.wait_for("Ready in")
        assert "earlier run that did not finish" in again.output
        assert backup.read_text() == saved
        again.kill_group()
    finally:
        again.kill_group()

    make = shutil.which("make")
    assert make is not None
    env = {**dev_env, "PYTHON": os.environ.get("PYTHON", "python3")}
    restore = _run([make, "-s", "-C", str(REPO), "restore", f"FILE={backup}"], env=env)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert number_webhooks(sandbox) == number_fields


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


# --- failures: one paragraph, a non-zero exit, nothing changed on the number ----------------


def _fails(env: dict[str, str], workdir: Path, *args: str) -> DevProcess:
    process = DevProcess(env, workdir, TUNNEL, *args)
    code = process.finish()
    assert code != 0, process.output
    assert "Traceback" not in process.output
    return process


@pytest.mark.parametrize(
    ("drop", "change", "phrases"),
    [
        pytest.param(
            "NGROK_AUTHTOKEN", {}, [("NGROK_AUTHTOKEN",), ("--public-url",)], id="no-authtoken"
        ),
        pytest.param(
            None, {"FAKE_NGROK_FAIL": "session-limit"}, [("ERR_NGROK_108", "108")], id="108"
        ),
        pytest.param(
            None, {"FAKE_NGROK_FAIL": "authtoken-required"}, [("ERR_NGROK_4018", "4018")], id="4018"
        ),
        pytest.param(
            "NGROK_PATH", {}, [("offline", "download"), ("--public-url",)], id="no-ngrok-offline"
        ),
        pytest.param(None, {"TWILIO_AUTH_TOKEN": "wrong"}, [("20003",)], id="bad-credentials"),
        pytest.param(
            None,
            {"TWILIO_PHONE_NUMBER": "+15550001234"},
            [("not a number on this Twilio account",)],
            id="number-not-on-account",
        ),
        pytest.param(
            "TWILIO_AUTH_TOKEN",
            {},
            [("TWILIO_ACCOUNT_SID is set but TWILIO_AUTH_TOKEN is not",)],
            id="sid-without-token",
        ),
        pytest.param(
            "TWILIO_ACCOUNT_SID",
            {},
            [("TWILIO_AUTH_TOKEN is set but TWILIO_ACCOUNT_SID is not",)],
            id="token-without-sid",
        ),
    ],
)
def test_each_failure_is_one_paragraph_and_changes_nothing(
    dev_env: dict[str, str],
    workdir: Path,
    sandbox: SandboxServer,
    number_fields: dict[str, str],
    drop: str | None,
    change: dict[str, str],
    phrases: list[tuple[str, ...]],
) -> None:
    env = {k: v for k, v in dev_env.items() if k != drop} | change
    output = _fails(env, workdir).output
    for alternatives in phrases:
        assert any(phrase in output or phrase in output.lower() for phrase in alternatives), output
    assert number_webhooks(sandbox) == number_fields


def test_a_host_of_another_machine_is_not_called_a_port_in_use(
    dev_env: dict[str, str], workdir: Path, sandbox: SandboxServer, number_fields: dict[str, str]
) -> None:
    process = _fails({**dev_env, "HOST": "192.0.2.1"}, workdir)  # TEST-NET-1: nobody's
    assert "HOST=192.0.2.1 is not an address of this machine" in process.output
    assert "already in use" not in process.output
    assert number_webhooks(sandbox) == number_fields


def test_port_taken(
    dev_env: dict[str, str], workdir: Path, sandbox: SandboxServer, number_fields: dict[str, str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        process = _fails({**dev_env, "PORT": str(port)}, workdir)
    assert f"Port {port}" in process.output
    assert number_webhooks(sandbox) == number_fields


# --- without an account: the sandbox, same code path, no tunnel ---------------------------


@pytest.fixture
def sandbox_env(tmp_path: Path) -> dict[str, str]:
    """A newcomer's environment: no Twilio credentials, no ngrok, no internet."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWILIO_", "NGROK_", "PUBLIC_URL", "API_TOKEN"))
    }
    env.update(
        PORT=str(free_port()),
        SANDBOX_PORT=str(free_port()),
        RULES_FILE=str(tmp_path / "rules.toml"),
        ROUTES_DIR=str(REPO / "routes"),
        DATABASE_PATH=str(tmp_path / "dialtone.db"),
    )
    shutil.copy(REPO / "rules.toml", tmp_path / "rules.toml")
    return env


def test_without_credentials_runs_against_the_sandbox(
    sandbox_env: dict[str, str], workdir: Path, tmp_path: Path
) -> None:
    process = DevProcess(sandbox_env, workdir)
    try:
        process.wait_for("Ready in")
        assert "sandbox" in process.output
        assert "make phone" in process.output
        phone = PhoneClient(f"http://127.0.0.1:{sandbox_env['SANDBOX_PORT']}")
        phone.send_sms("hours")
        reply = phone.wait_for(lambda e: e["type"] == "message", timeout=10)
        assert "open" in reply["body"]

        # Editing the rules file takes effect on the next text, with no restart.
        rules = tmp_path / "rules.toml"
        rules.write_text(rules.read_text().replace("We're open", "Now open"))
        phone.send_sms("hours")
        again = phone.wait_for(
            lambda e: e["type"] == "message" and e["sid"] != reply["sid"], timeout=10
        )
        assert again["body"].startswith("Now open")
        assert process.stop() == 0
    finally:
        process.kill_group()


def test_adding_a_route_reloads_the_app_but_not_the_tunnel_or_the_number(
    dev_env: dict[str, str],
    tmp_path: Path,
    sandbox: SandboxServer,
    number_fields: dict[str, str],
    fake_ngrok: FakeNgrok,
) -> None:
    # A copy of the project, so the test can edit a route as a developer would.
    project = tmp_path / "project"
    project.mkdir()
    for part in ("server.py", "rules.toml", "dialtone", "routes"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, project / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, project / part)
    env = {**dev_env, "ROUTES_DIR": str(project / "routes")}
    process = DevProcess(env, project, TUNNEL)  # python -m: the copy's dialtone
    try:
        process.wait_for("Ready in")
        public = public_url_of(process)
        agent = fake_ngrok.pid()
        pointed = number_webhooks(sandbox)
        # A new route file, added while the app runs (the five-line route of the docs).
        hello = project / "routes" / "hello.py"
        deadline = time.monotonic() + 20
        answer = ""
        while time.monotonic() < deadline and "Hi +15551230000" not in answer:
            # Made again until it shows: hupper learns what to watch a moment after the app
            # starts, and a file made before that is not noticed (the directory's mtime is).
            hello.unlink(missing_ok=True)
            hello.write_text(HELLO_ROUTE)
            time.sleep(0.3)
            form = {"From": "+15551230000", "Body": "hi"}
            signature = sign(dev_env["TWILIO_AUTH_TOKEN"], public + "/hello", form)
            request = urllib.request.Request(
                fake_ngrok.forwarder(public) + "/hello",
                data=urllib.parse.urlencode(form).encode(),
                headers={"X-Twilio-Signature": signature},
            )
            try:
                with urlopen(request, timeout=2) as reply:
                    answer = reply.read().decode()
            except OSError:
                continue  # the app is restarting, or has not loaded the route yet (404)
        assert "<Message>Hi +15551230000!</Message>" in answer, process.output
        assert fake_ngrok.pid() == agent  # same tunnel
        assert number_webhooks(sandbox) == pointed  # the number was not touched again
        assert process.stop() == 0
        assert number_webhooks(sandbox) == number_fields
    finally:
        process.kill_group()


def test_the_banner_shows_the_changes_the_inspector_and_a_qr_code(
    dev: DevProcess, number_fields: dict[str, str]
) -> None:
    dev.wait_for("Ready in")
    public = public_url_of(dev)
    assert re.search(
        rf"voice_url\s+{re.escape(ORIGINAL['voice_url'])}\s+->\s+{re.escape(public)}/voice_url",
        dev.output,
    )
    assert re.search(r"Inspector\s+http://127\.0\.0\.1:\d+", dev.output)
    assert "Scan to text the number" in dev.output
    assert "█" in dev.output  # the QR code's blocks


def test_the_inspector_url_is_printed_whole_in_an_80_column_terminal() -> None:
    url = "http://127.0.0.1:5057/?token=" + "t" * 43  # as long as make dev's
    banner = Banner("sandbox", "http://127.0.0.1:5000", "+15005550006", "http://127.0.0.1:5000")
    banner.page_url = url
    console = Console(record=True, width=80, color_system=None)
    print_banner(console, banner)
    lines = console.export_text().splitlines()
    assert f"Inspector  {url}" in lines  # one line, never cut or folded by the panel
    assert not any(url[:-1] in line and url not in line for line in lines)


def test_no_update_leaves_the_number_and_keeps_no_backup(
    dev_env: dict[str, str], workdir: Path, sandbox: SandboxServer, number_fields: dict[str, str]
) -> None:
    with dev_running(dev_env, workdir, TUNNEL, "--no-update") as process:
        assert number_webhooks(sandbox) == number_fields
        assert not (workdir / ".dialtone").exists()
        assert process.stop() == 0


def test_without_reload_sigterm_still_restores(
    dev_env: dict[str, str], workdir: Path, sandbox: SandboxServer, number_fields: dict[str, str]
) -> None:
    with dev_running(dev_env, workdir, TUNNEL, "--no-reload") as process:
        assert number_webhooks(sandbox) != number_fields
        assert process.stop(signal.SIGTERM) == 0
        assert number_webhooks(sandbox) == number_fields


def test_an_unreachable_twilio_api_is_one_paragraph(dev_env: dict[str, str], workdir: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    process = _fails({**dev_env, "TWILIO_API_URL": closed, "TWILIO_TIMEOUT": "2"}, workdir)
    assert "Could not reach 127.0.0.1" in process.output
    assert "nothing was changed" in process.output


def test_a_local_twilio_api_needs_no_tunnel(
    dev_env: dict[str, str],
    workdir: Path,
    sandbox: SandboxServer,
    number_fields: dict[str, str],
    fake_ngrok: FakeNgrok,
) -> None:
    # What `make sandbox` tells you to put in .env: the app reaches it directly.
    local = {k: v for k, v in dev_env.items() if k != "NGROK_AUTHTOKEN"}
    process = DevProcess(local, workdir)
    try:
        process.wait_for("Ready in")
        assert "local Twilio API" in process.output
        assert number_webhooks(sandbox)["sms_url"] == f"http://127.0.0.1:{dev_env['PORT']}/sms_url"
        assert fake_ngrok.pid() is None
        assert process.stop() == 0
        assert number_webhooks(sandbox) == number_fields
    finally:
        process.kill_group()


def text_until_answered(phone: PhoneClient, body: str, deadline: float) -> dict[str, Any]:
    """Text `body` until the app answers; the answer (or the last error by `deadline`).

    A write the reloader saw after the app came back (a test writes its fix until the app
    shows it) restarts it once more: a text sent then finds no app (11202 refused, 11205/11206
    cut off by the restart), so it is sent again."""
    answer: dict[str, Any] = {}
    while time.monotonic() < deadline and answer.get("type") != "message":
        phone.send_sms(body)
        answer = phone.wait_for(lambda e: e["type"] in ("message", "error"), timeout=10)
        if answer["type"] == "error":
            assert answer["code"] in (11202, 11205, 11206), answer  # the app restarting
            time.sleep(0.5)
    return answer


def test_a_broken_rules_file_is_explained_and_fixing_it_brings_the_app_back(
    sandbox_env: dict[str, str], workdir: Path, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    good = rules.read_text()
    rules.write_text(good + "\n[keywords\n")
    process = DevProcess(sandbox_env, workdir)
    try:
        process.wait_for("Fix it and save")
        assert "rules.toml" in process.output
        assert "Traceback" not in process.output
        deadline = time.monotonic() + 20
        while "SMS rules from" not in process.output and time.monotonic() < deadline:
            # Written again until it shows: the reloader learns of the file a moment after
            # the app reported it, and an edit made before that is not noticed.
            rules.write_text(good)
            time.sleep(0.3)
        assert "SMS rules from" in process.output
        phone = PhoneClient(f"http://127.0.0.1:{sandbox_env['SANDBOX_PORT']}")
        answer = text_until_answered(phone, "hours", deadline=time.monotonic() + 30)
        assert "open" in answer.get("body", ""), answer
        assert process.stop() == 0
    finally:
        process.kill_group()


def test_make_dev_warns_once_of_an_open_app_and_of_a_number_it_does_not_use(
    sandbox_env: dict[str, str], workdir: Path
) -> None:
    env = {**sandbox_env, "VALIDATE_SIGNATURES": "false", "TWILIO_PHONE_NUMBER": "+15550001111"}
    process = DevProcess(env, workdir)
    try:
        process.wait_for("Ready in")
        assert process.output.count("ANYONE can post fake Twilio webhooks") == 1
        assert "TWILIO_PHONE_NUMBER (+15550001111) is set, but without" in process.output
        assert process.stop() == 0
    finally:
        process.kill_group()


def test_a_record_that_cannot_be_opened_says_to_restart_not_to_save(
    sandbox_env: dict[str, str], workdir: Path, tmp_path: Path
) -> None:
    # A setting is read once, when make dev starts: saving .env cannot bring the app back.
    (tmp_path / "a-file").write_text("")
    env = {**sandbox_env, "DATABASE_PATH": str(tmp_path / "a-file" / "dialtone.db")}
    process = DevProcess(env, workdir)
    try:
        process.wait_for("start it again")
        assert "Fix it, then stop make dev (Ctrl-C) and start it again." in process.output
        assert "Fix it and save" not in process.output
        assert "Traceback" not in process.output
        assert process.stop() == 0
    finally:
        process.kill_group()


def test_sms_path_points_the_number_at_a_new_route(
    sandbox_env: dict[str, str], workdir: Path, tmp_path: Path
) -> None:
    routes = copy_routes(tmp_path)
    (routes / "hello.py").write_text(HELLO_ROUTE)
    env = {**sandbox_env, "ROUTES_DIR": str(routes)}
    process = DevProcess(env, workdir, "--sms-path", "/hello")
    try:
        process.wait_for("Ready in")
        assert re.search(r"sms_url\s+\S*\s*->\s+http://127\.0\.0\.1:\d+/hello", process.output)
        phone = PhoneClient(f"http://127.0.0.1:{sandbox_env['SANDBOX_PORT']}")
        phone.send_sms("hi")
        reply = phone.wait_for(lambda e: e["type"] == "message", timeout=10)
        assert reply["body"].startswith("Hi +")
        assert reply["body"].endswith("!")
        assert process.stop() == 0
    finally:
        process.kill_group()


def test_a_broken_route_module_is_one_paragraph_and_fixing_it_brings_the_app_back(
    sandbox_env: dict[str, str], workdir: Path, tmp_path: Path
) -> None:
    routes = copy_routes(tmp_path)
    hello = routes / "hello.py"
    hello.write_text(HELLO_ROUTE.replace("def hello(form):", "def hello(form)"))
    env = {**sandbox_env, "ROUTES_DIR": str(routes)}
    process = DevProcess(env, workdir, "--sms-path", "/hello")
    try:
        process.wait_for("Fix it and save")
        assert "hello.py cannot be loaded: line 6: SyntaxError" in process.output
        assert "Traceback" not in process.output
        assert "Ready in" not in process.output  # the banner waits for an app that answers
        # Meanwhile a text is answered 500 with the reason, which the phone shows (11200).
        phone = PhoneClient(f"http://127.0.0.1:{sandbox_env['SANDBOX_PORT']}")
        deadline = time.monotonic() + 20
        notice: dict[str, Any] = {}
        while time.monotonic() < deadline and notice.get("code") != 11200:
            phone.send_sms("hi")
            notice = phone.wait_for(lambda e: e["type"] == "error", timeout=10)
        assert "cannot start" in notice["text"]
        assert "hello.py cannot be loaded: line 6: SyntaxError" in notice["text"]
        deadline = time.monotonic() + 20
        while "Ready in" not in process.output and time.monotonic() < deadline:
            hello.write_text(HELLO_ROUTE)  # again until the reloader has noticed it
            time.sleep(0.3)
        answer = text_until_answered(phone, "hi", deadline=deadline + 20)
        assert answer.get("body", "").startswith("Hi"), answer
        assert process.stop() == 0
    finally:
        process.kill_group()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def is_app_child(pid: int) -> bool:
    """True for hupper's worker, once it runs Python (not the parent's fork before exec, nor
    hupper's probe for watchman)."""
    return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()


def sigint_held_off(pid: int) -> bool:
    """True when SIGINT is blocked or ignored in process `pid` (its /proc status)."""
    masks = {
        name: int(value, 16)
        for name, value in (
            line.split(":") for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        if name in ("SigBlk", "SigIgn")
    }
    return bool((masks["SigBlk"] | masks["SigIgn"]) & (1 << (signal.SIGINT - 1)))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_ctrl_c_while_the_app_child_starts_stops_without_a_traceback(
    sandbox_env: dict[str, str], workdir: Path
) -> None:
    # Ctrl-C reaches the whole process group. The app child, still importing its modules,
    # used to die of it with a KeyboardInterrupt traceback; it now starts with SIGINT blocked
    # and the parent stops it with SIGTERM.
    process = DevProcess(sandbox_env, workdir)
    try:
        deadline = time.monotonic() + 20
        child = None
        while child is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # (a child gone meanwhile: hupper's probes)
                child = next(
                    (pid for pid in child_pids(process.process.pid) if is_app_child(pid)), None
                )
        assert child, process.output
        assert sigint_held_off(child), "the app child must start with SIGINT held off"
        assert process.stop(signal.SIGINT) == 0
        assert "Traceback" not in process.output
        assert "KeyboardInterrupt" not in process.output
        assert "Done." in process.output
    finally:
        process.kill_group()


def test_a_killed_sandbox_run_does_not_block_the_next(
    sandbox_env: dict[str, str], workdir: Path
) -> None:
    first = DevProcess(sandbox_env, workdir)
    try:
        first.wait_for("Ready in")
    finally:
        first.kill_group()
    again = DevProcess(sandbox_env, workdir)
    try:
        again.wait_for("Ready in")
        assert again.stop() == 0
    finally:
        again.kill_group()
    assert not (workdir / ".dialtone").exists()


def test_restore_with_a_missing_file_fails_clearly(dev_env: dict[str, str], workdir: Path) -> None:
    done = _run(
        [sys.executable, "-m", "dialtone", "restore", "--file", "nope.json"],
        env={**dev_env, "PWD": str(workdir)},
    )
    assert done.returncode == 2
    assert "There is no backup at nope.json" in done.stderr
