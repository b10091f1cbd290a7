"""deploy/'s systemd units parse, and the instances want the migrate unit rather than require it."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

DEPLOY = REPO / "deploy"


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    parser.read(DEPLOY / name)
    return parser


def test_restarting_the_migrate_unit_does_not_restart_the_instances() -> None:
    # Requires= would restart every dialtone@ unit with it, and fail them all when a migration
    # fails at boot; each instance migrates at start anyway, under a lock.
    instance = unit("dialtone@.service")["Unit"]
    assert "Requires" not in instance
    assert "dialtone-migrate.service" in instance["Wants"].split()
    assert "dialtone-migrate.service" in instance["After"].split()
    migrate = unit("dialtone-migrate.service")["Service"]
    assert (migrate["Type"], migrate["Restart"]) == ("oneshot", "on-failure")


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd) to check the units")
    for name in ("dialtone-migrate.service", "dialtone@.service"):
        shutil.copy(DEPLOY / name, tmp_path / name.replace("@.", "@1."))
    units = [str(tmp_path / "dialtone-migrate.service"), str(tmp_path / "dialtone@1.service")]
    done = subprocess.run(
        [analyze, "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and "is not executable" not in line  # /opt/dialtone is not here
    ]
    assert problems == []
