"""deploy/nginx.conf and deploy/Caddyfile are accepted by the nginx and Caddy Debian ships.

The certificate paths are pointed at a throwaway self-signed pair; nothing listens. (Both were
also run by hand in front of `dialtone serve`, with a signed webhook through each.)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

DEPLOY = REPO / "deploy"


def tool(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.skip(f"{name} is not installed: apt-get install -y {package} to check {name}'s file")
    return found


def test_nginx_accepts_the_site(tmp_path: Path) -> None:
    nginx = tool("nginx", "nginx-light")
    openssl = tool("openssl", "openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=bot.example.com", "-keyout", str(key), "-out", str(cert)],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    site = (DEPLOY / "nginx.conf").read_text()
    site = site.replace("/etc/letsencrypt/live/bot.example.com/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/bot.example.com/privkey.pem", str(key))
    (tmp_path / "site.conf").write_text(site)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n    access_log off;\n    include {tmp_path}/site.conf;\n}}\n"
    )
    done = subprocess.run(
        [nginx, "-t", "-c", str(main), "-p", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_caddy_accepts_the_caddyfile(tmp_path: Path) -> None:
    caddy = tool("caddy", "caddy")
    done = subprocess.run(
        [caddy, "validate", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
        capture_output=True, text=True, timeout=60, check=False,
        env={"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Valid configuration" in done.stdout + done.stderr
