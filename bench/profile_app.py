"""Where Dialtone's time goes per webhook, without the network: cProfile over the WSGI app.

python -m bench.profile_app [--route /sms_url] [--count 20000] [--database-url postgresql://...]
(recording into a temp SQLite file, or into the PostgreSQL database given)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.run import ACCOUNT_SID, AUTH_TOKEN, PHONE_NUMBER, PUBLIC_URL
from dialtone.app import create_app
from dialtone.settings import Settings
from dialtone.web.accesslog import AccessLog


def environ_for(raw: bytes) -> dict[str, Any]:
    """A WSGI environ like waitress builds for one raw request."""
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    method, path, _ = lines[0].split(" ")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "5000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
    }
    for line in lines[1:]:
        name, value = line.split(": ", 1)
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            environ["HTTP_" + key] = value
    return environ


def main() -> None:
    """Profile `count` signed webhooks through AccessLog(app), as waitress would call it."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--route", default="/sms_url")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--sort", default="cumulative", help="pstats order: cumulative, tottime")
    parser.add_argument("--database-url", help="record into this PostgreSQL database instead")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=io.StringIO())  # log lines formatted, kept
    settings = Settings(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        phone_number=PHONE_NUMBER,
        public_url=PUBLIC_URL,
        rules_file=Path(__file__).resolve().parent.parent / "rules.toml",
        database_path=Path(tempfile.mkdtemp(prefix="dialtone-profile-")) / "profile.db",
        database_url=args.database_url,
    )
    app = AccessLog(create_app(settings))
    raws = [
        loadgen.signed_request(
            "127.0.0.1:5000",
            args.route,
            loadgen.inbound_sms_form(i, ACCOUNT_SID, PHONE_NUMBER),
            auth_token=AUTH_TOKEN,
            public_url=PUBLIC_URL,
        )
        for i in range(args.count)
    ]
    environs = [environ_for(raw) for raw in raws]
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for environ in environs:
        b"".join(app(environ, start_response))
    profiler.disable()
    elapsed = time.perf_counter() - started
    print(f"{args.count} requests, {elapsed / args.count * 1e6:.0f} us each under cProfile")
    print("statuses:", sorted(set(statuses)))
    pstats.Stats(profiler).sort_stats(args.sort).print_stats(35)


if __name__ == "__main__":
    main()
