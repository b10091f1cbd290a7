"""Data flows one way: import-linter checks the contracts in pyproject.toml ([tool.importlinter]).

The app never imports the dev loop or the sandbox, the sandbox never imports the app, and
dialtone.facts imports nothing from dialtone.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` run in `project` (its pyproject.toml, its packages)."""
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_contracts_hold() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "pyproject.toml", project)
    for package in ("dialtone", "routes"):
        shutil.copytree(REPO / package, project / package, ignore=shutil.ignore_patterns("*.pyc"))
    return project


def test_an_app_module_importing_the_sandbox_breaks_a_contract(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    texting = project / "dialtone" / "bot" / "texting.py"
    texting.write_text(texting.read_text() + "\nfrom dialtone.sandbox.state import SandboxState\n")
    done = lint_imports(project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "dialtone.bot.texting -> dialtone.sandbox.state" in done.stdout


def test_facts_importing_anything_from_dialtone_breaks_a_contract(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    facts = project / "dialtone" / "facts.py"
    facts.write_text(facts.read_text() + "\nfrom dialtone.errors import DialtoneError\n")
    done = lint_imports(project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "dialtone.facts -> dialtone.errors" in done.stdout
