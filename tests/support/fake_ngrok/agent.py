"""A fake ngrok v3 agent that the real pyngrok starts, talks to and kills as if it were ngrok.

Standard library only, so the `ngrok` launcher next to this file runs it with any python3.

What pyngrok 9.1 does with the agent (pyngrok/process.py, pyngrok/ngrok.py):

- runs `ngrok start --none --log stdout [--config PATH] [--authtoken TOKEN] [--region R]`;
- reads logfmt lines (`t=... lvl=info msg="..." key=value`) from stdout until it has seen
  `msg="starting web service" addr=HOST:PORT`, `msg="client session established"` and
  `msg="tunnel session started"`, and `GET http://HOST:PORT/api/endpoints` answers 200; an
  `lvl=eror` or `lvl=crit` line's `err=` becomes its startup error, and the process exiting ends
  the wait;
- `POST /api/endpoints` with `{"name", "upstream": {"url"}, "url"?}` opens an endpoint, the answer's
  `url` is the public URL; `DELETE /api/endpoints/<name>` closes it; `ngrok.kill` sends SIGKILL.

For each endpoint this agent opens a real listener on loopback, the "public side", that forwards
every request to the upstream with what ngrok's edge adds: Host and X-Forwarded-Host set to the
public host, X-Forwarded-Proto: https, the client appended to X-Forwarded-For. The public URL is
https://<random>.ngrok-free.app, which nothing resolves, so tests send to the listener instead: its
address is the endpoint's `fake_forwarder` field in the agent API and in the FAKE_NGROK_STATE file.

Environment (inherited from whoever starts pyngrok):

  NGROK_AUTHTOKEN      read as ngrok does, like --authtoken and `authtoken:` in the config file;
                       with none of them the session fails with ERR_NGROK_4018.
  FAKE_NGROK_FAIL      "session-limit": ERR_NGROK_108 (another agent session is running);
                       "authtoken-required": ERR_NGROK_4018 even with a token;
                       "invalid-authtoken": ERR_NGROK_107; "offline": ngrok's servers cannot be
                       reached, so the agent keeps logging failed reconnects and never comes up.
  FAKE_NGROK_DOMAINS   comma-separated domains reserved on the fake account; asking for any other
                       domain fails with ERR_NGROK_319 (ERR_NGROK_320 for "taken.ngrok.app").
  FAKE_NGROK_STATE     a JSON file this agent keeps up to date: pid, api_url, argv (token hidden),
                       whether an authtoken was given, and endpoints {public_url: {forwarder, ...}}.
  FAKE_NGROK_WEB_ADDR  where the agent API listens; default 127.0.0.1:0 (a free port).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import re
import secrets
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

VERSION = "3.99.0-fake"

# Endpoint fields ngrok's agent API accepts in a v3 endpoint definition.
ENDPOINT_FIELDS = {
    "name",
    "description",
    "metadata",
    "url",
    "upstream",
    "traffic_policy",
    "bindings",
    "pooling_enabled",
    "agent_tls_termination",
    "inspect",
}

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}

# Request headers the public side sets itself rather than passing on.
REPLACED_HEADERS = {
    "host",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
}

# ngrok's own error texts (https://ngrok.com/docs/errors/), escaped the way its logfmt shows them.
ERR_4018 = (
    "authentication failed: Usage of ngrok requires a verified account and authtoken.\n\n"
    "Sign up for an account: https://dashboard.ngrok.com/signup\n"
    "Install your authtoken: https://dashboard.ngrok.com/get-started/your-authtoken\r\n\r\n"
    "ERR_NGROK_4018\r\n"
)
ERR_107 = (
    "authentication failed: The authtoken you specified is properly formed, but it is invalid.\n"
    "Your authtoken: {token}\n"
    "This usually happens when:\n"
    "    - You reset your authtoken\n"
    "    - Your authtoken was for a team account that you were removed from\n"
    "    - You are using ngrok link and this credential was explicitly revoked\n"
    "Go to your ngrok dashboard and double check that your authtoken is correct:\n"
    "https://dashboard.ngrok.com/get-started/your-authtoken\r\n\r\nERR_NGROK_107\r\n"
)
ERR_108 = (
    "authentication failed: Your account is limited to 1 simultaneous ngrok agent sessions.\n"
    "You can run multiple simultaneous tunnels from a single agent session by defining the "
    "tunnels in your agent configuration file and starting them with the command "
    "`ngrok start --all`.\n"
    "Read more about the agent configuration file: "
    "https://ngrok.com/docs/secure-tunnels/ngrok-agent/reference/config\n"
    "You can view your current agent sessions in the dashboard:\n"
    "https://dashboard.ngrok.com/agents\r\n\r\nERR_NGROK_108\r\n"
)
ERR_319 = (
    "failed to start tunnel: You must reserve a custom hostname for your account before it can "
    "be used to create endpoints.\n"
    "Failed to create an endpoint with the domain '{domain}' for the account 'Dialtone Tests'.\n\n"
    "Reserve this name on your dashboard: https://dashboard.ngrok.com/domains/new\r\n\r\n"
    "ERR_NGROK_319\r\n"
)
ERR_320 = (
    "failed to start tunnel: This domain is reserved for another account.\n"
    "Failed to create an endpoint with the domain '{domain}' for the account 'Dialtone Tests'.\n\n"
    "If you have reserved this name, make sure that you are using an authtoken credential for "
    "the appropriate account.\n"
    "Reserve a name on your dashboard: https://dashboard.ngrok.com/domains/new\r\n\r\n"
    "ERR_NGROK_320\r\n"
)
ERR_OFFLINE = (
    'failed to dial ngrok server with address "connect.ngrok-agent.com:443": '
    "dial tcp: lookup connect.ngrok-agent.com: no such host"
)
ERR_8012 = (
    "Traffic was successfully tunneled to the ngrok agent, but the agent failed to establish a "
    "connection to the upstream web service at {upstream}.\r\n\r\nERR_NGROK_8012\r\n"
)

_print_lock = threading.Lock()


def log(lvl: str, msg: str, **fields: Any) -> None:
    """One logfmt line on stdout, as `ngrok --log stdout --log-format term` writes them."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    parts = [f"t={now}", f"lvl={lvl}", f"msg={_quote(msg)}"]
    parts += [f"{key}={_quote(str(value))}" for key, value in fields.items()]
    with _print_lock:
        try:
            sys.stdout.write(" ".join(parts) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass  # nobody is reading any more; pyngrok stopped monitoring


def _quote(value: str) -> str:
    # Go's logfmt quotes values with spaces, quotes or escapes; json.dumps quotes the same way.
    if value and re.fullmatch(r"[^\s\"=\\]+", value):
        return value
    return json.dumps(value)


class Endpoint:
    """One open endpoint and the loopback listener that plays its public side."""

    def __init__(self, name: str, public_url: str, upstream: str) -> None:
        self.name = name
        self.public_url = public_url
        self.upstream = upstream
        self.public_host = urlsplit(public_url).hostname or ""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _forwarder_handler(self))
        self.server.daemon_threads = True
        self.forwarder = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uri": f"/api/endpoints/{self.name}",
            "url": self.public_url,
            "upstream": {"url": self.upstream, "protocol": "http1"},
            "traffic_policy": "",
            "pooling_enabled": False,
            "metrics": {"conns": {"count": 0}, "http": {"count": 0}},
            "fake_forwarder": self.forwarder,
        }


def _upstream_address(upstream: str) -> tuple[str, int]:
    """host, port from an upstream as pyngrok writes it: http://localhost:5000, localhost:5000, 5000."""
    if upstream.isdigit():
        return "localhost", int(upstream)
    parts = urlsplit(upstream if "://" in upstream else "http://" + upstream)
    return parts.hostname or "localhost", parts.port or 80


def _forwarder_handler(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Forwarder(BaseHTTPRequestHandler):
        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = [
                (key, value)
                for key, value in self.headers.items()
                if key.lower() not in HOP_BY_HOP and key.lower() not in REPLACED_HEADERS
            ]
            prior = self.headers.get("X-Forwarded-For")
            client = self.client_address[0]
            headers += [
                ("Host", endpoint.public_host),
                ("X-Forwarded-For", f"{prior}, {client}" if prior else client),
                ("X-Forwarded-Host", endpoint.public_host),
                ("X-Forwarded-Proto", "https"),
            ]
            host, port = _upstream_address(endpoint.upstream)
            conn = http.client.HTTPConnection(host, port, timeout=30)
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for key, value in headers:
                    conn.putheader(key, value)
                if body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                answer = conn.getresponse()
                data = answer.read()
            except OSError:
                self._reply(502, ERR_8012.format(upstream=endpoint.upstream).encode())
                return
            finally:
                conn.close()
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() not in (
                    "content-length",
                    "server",
                    "date",
                ):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _reply(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = forward

        def log_message(self, format: str, *args: Any) -> None:
            pass  # ngrok does not log requests at info level

    return Forwarder


class Agent:
    """The agent's state: its API server, endpoints, and the state file tests read."""

    def __init__(self, argv: list[str], authtoken: str | None) -> None:
        self.argv = argv
        self.authtoken = authtoken
        self.endpoints: dict[str, Endpoint] = {}
        self.lock = threading.Lock()
        self.reserved = {
            d.strip().lower()
            for d in os.environ.get("FAKE_NGROK_DOMAINS", "").split(",")
            if d.strip()
        }
        host, _, port = os.environ.get("FAKE_NGROK_WEB_ADDR", "127.0.0.1:0").rpartition(":")
        self.api = ThreadingHTTPServer((host, int(port)), _api_handler(self))
        self.api.daemon_threads = True
        self.web_addr = f"{host}:{self.api.server_address[1]}"
        self.status = "starting"

    def serve(self) -> None:
        threading.Thread(target=self.api.serve_forever, daemon=True).start()

    def start_endpoint(self, spec: Any) -> tuple[int, dict[str, Any]]:
        """Open an endpoint from a POST /api/endpoints body; (status, JSON answer)."""
        if not isinstance(spec, dict):
            return 400, _api_error(102, 400, "invalid tunnel configuration", "not an object")
        unknown = sorted(set(spec) - ENDPOINT_FIELDS)
        if unknown:
            err = f"yaml: unmarshal errors:\n  line 1: field {unknown[0]} not found in type config.HTTPv3Endpoint"
            return 400, _api_error(102, 400, "invalid tunnel configuration", err)
        upstream = (spec.get("upstream") or {}).get("url")
        if not upstream:
            return 400, _api_error(
                102, 400, "invalid tunnel configuration", "upstream.url is required"
            )
        name = str(spec.get("name") or f"endpoint-{secrets.token_hex(4)}")
        url = urlsplit(str(spec.get("url") or "https://"))
        domain = (url.hostname or "").lower()
        if domain and domain not in self.reserved:
            template = ERR_320 if domain == "taken.ngrok.app" else ERR_319
            err = template.format(domain=domain)
            log("eror", "failed to start tunnel", obj="tunnels", name=name, err=err)
            return 502, _api_error(103, 502, "failed to start tunnel", err)
        host = domain or f"{secrets.token_hex(6)}.ngrok-free.app"
        with self.lock:
            if name in self.endpoints:
                err = f"A tunnel with the name '{name}' already exists."
                return 400, _api_error(102, 400, "invalid tunnel configuration", err)
            endpoint = Endpoint(name, f"{url.scheme or 'https'}://{host}", str(upstream))
            self.endpoints[name] = endpoint
        log(
            "info",
            "started tunnel",
            obj="tunnels",
            name=name,
            addr=upstream,
            url=endpoint.public_url,
        )
        self.write_state()
        return 201, endpoint.as_json()

    def stop_endpoint(self, name: str) -> bool:
        with self.lock:
            endpoint = self.endpoints.pop(name, None)
        if endpoint is None:
            return False
        endpoint.close()
        log("info", "end tunnel", obj="tunnels", name=name)
        self.write_state()
        return True

    def write_state(self) -> None:
        path = os.environ.get("FAKE_NGROK_STATE")
        if not path:
            return
        with self.lock:
            state = {
                "pid": os.getpid(),
                "status": self.status,
                "api_url": f"http://{self.web_addr}",
                "argv": _hide_token(self.argv),
                "authtoken": bool(self.authtoken),
                "endpoints": {
                    e.public_url: {"name": e.name, "forwarder": e.forwarder, "upstream": e.upstream}
                    for e in self.endpoints.values()
                },
            }
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2)
        os.replace(tmp, path)


def _hide_token(argv: list[str]) -> list[str]:
    return ["(hidden)" if i and argv[i - 1] == "--authtoken" else a for i, a in enumerate(argv)]


def _api_error(code: int, status: int, msg: str, err: str) -> dict[str, Any]:
    return {"error_code": code, "status_code": status, "msg": msg, "details": {"err": err}}


def _api_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Api(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            if path == "/api/endpoints":
                with agent.lock:
                    items = [e.as_json() for e in agent.endpoints.values()]
                self._json(200, {"endpoints": items, "uri": "/api/endpoints"})
            elif path.startswith("/api/endpoints/"):
                endpoint = agent.endpoints.get(path.rsplit("/", 1)[1])
                if endpoint is None:
                    self._not_found()
                else:
                    self._json(200, endpoint.as_json())
            elif path == "/api/tunnels":
                self._json(200, {"tunnels": [], "uri": "/api/tunnels"})
            elif path == "/api/status":
                self._json(
                    200, {"status": agent.status, "agent_version": VERSION, "uri": "/api/status"}
                )
            elif path in ("", "/inspect/http"):
                page = b"<!doctype html><title>ngrok (fake)</title><p>Fake ngrok inspector.</p>"
                self._send(200, "text/html; charset=utf-8", page)
            else:
                self._not_found()

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/api/endpoints":
                self._not_found()
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                spec = json.loads(self.rfile.read(length) or b"null")
            except ValueError:
                self._json(400, _api_error(102, 400, "invalid tunnel configuration", "bad JSON"))
                return
            self._json(*agent.start_endpoint(spec))

        def do_DELETE(self) -> None:
            path = self.path.rstrip("/")
            if path.startswith("/api/endpoints/") and agent.stop_endpoint(path.rsplit("/", 1)[1]):
                self._send(204, "application/json", b"")
            else:
                self._not_found()

        def _not_found(self) -> None:
            self._json(404, _api_error(100, 404, "Not Found", self.path))

        def _json(self, status: int, data: dict[str, Any]) -> None:
            self._send(status, "application/json", json.dumps(data).encode())

        def _send(self, status: int, content_type: str, data: bytes) -> None:
            self.send_response(status)
            if status != 204:
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Api


def _config_authtoken(paths: list[str]) -> str | None:
    """`authtoken:` from ngrok config files (top level in v2, under `agent:` in v3)."""
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        match = re.search(r"^\s*authtoken:\s*[\"']?([^\s\"']+)", text, re.MULTILINE)
        if match:
            return match.group(1)
    return None


def _fail_session(agent: Agent, err: str) -> int:
    """What ngrok prints when the session is refused, and its exit status."""
    sid = secrets.token_hex(6)
    log("eror", "failed to reconnect session", obj="tunnels.session", id=sid, err=err)
    log("eror", "session closing", obj="tunnels.session", err=err)
    log("info", "received stop request", obj="app", stopReq="{err:<nil> restart:false}")
    log("eror", "terminating with error", obj="app", err=err)
    log("crit", "command failed", err=err)
    agent.status = "failed"
    agent.write_state()
    return 1


def _wait_until_stopped(agent: Agent, *, offline: bool = False) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    while not stop.wait(0.2 if offline else 0.5):
        if os.getppid() != parent:
            return 0  # whoever started us is gone; don't outlive it
        if offline:
            log("eror", "failed to reconnect session", obj="tunnels.session", err=ERR_OFFLINE)
    log("info", "received stop request", obj="app", stopReq="{err:<nil> restart:false}")
    for name in list(agent.endpoints):
        agent.stop_endpoint(name)
    return 0


def main(argv: list[str]) -> int:
    """Run as `ngrok ARGS...`; return the exit status."""
    if argv[:1] in (["--version"], ["version"]):
        print(f"ngrok version {VERSION}")
        return 0
    if argv[:2] == ["config", "add-authtoken"]:
        print("Authtoken saved to configuration file: (fake, nothing saved)")
        return 0
    if argv[:1] != ["start"]:
        print(f"fake ngrok: unsupported command {argv!r}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="ngrok start", add_help=False)
    parser.add_argument("--none", action="store_true")
    parser.add_argument("--log")
    parser.add_argument("--log-format")
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("--authtoken")
    parser.add_argument("--region")
    args, _ = parser.parse_known_args(argv[1:])
    configs = [p for c in args.config for p in c.split(",")]
    token = args.authtoken or os.environ.get("NGROK_AUTHTOKEN") or _config_authtoken(configs)

    agent = Agent(argv, token)
    agent.serve()
    for path in configs:
        log("info", "open config file", path=path, err="<nil>")
    log("info", "starting web service", obj="web", addr=agent.web_addr, allow_hosts="[]")
    agent.write_state()

    fail = os.environ.get("FAKE_NGROK_FAIL", "")
    if not token or fail == "authtoken-required":
        return _fail_session(agent, ERR_4018)
    if fail == "invalid-authtoken":
        # Like ngrok, print the token it was given: Dialtone must keep it out of its messages.
        return _fail_session(agent, ERR_107.format(token=token))
    if fail == "session-limit":
        return _fail_session(agent, ERR_108)
    if fail == "offline":
        return _wait_until_stopped(agent, offline=True)

    log("info", "client session established", obj="tunnels.session")
    log("info", "tunnel session started", obj="tunnels.session")
    agent.status = "online"
    agent.write_state()
    return _wait_until_stopped(agent)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
