"""pyproject.toml and the lock files agree, and an installed Dialtone has every file it reads."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dialtone.commands import COMMANDS
from tests.conftest import REPO


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line in a requirements file."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.split("#")[0].strip())
        if match:
            found[canonicalize_name(match[1])] = match[2]
    return found


@pytest.mark.parametrize("dependency", pyproject()["project"]["dependencies"])
def test_each_dependency_is_pinned_within_its_range(dependency: str) -> None:
    requirement = Requirement(dependency)
    pinned = pins(REPO / "requirements.txt").get(canonicalize_name(requirement.name))
    assert pinned is not None, f"{requirement.name} is not pinned in requirements.txt"
    assert requirement.specifier.contains(pinned), (
        f"{requirement.name}=={pinned} not in {dependency}"
    )


def test_every_file_the_package_reads_is_package_data() -> None:
    data = pyproject()["tool"]["setuptools"]["package-data"]
    missing = []
    for path in sorted((REPO / "dialtone").rglob("*")):
        if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(REPO)
        declared = False
        for package, patterns in data.items():
            base = Path(*package.split("."))
            if relative.is_relative_to(base):
                inside = relative.relative_to(base).as_posix()
                declared |= any(fnmatch(inside, pattern) for pattern in patterns)
        if not declared:
            missing.append(str(relative))
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_the_console_script_is_the_command() -> None:
    assert pyproject()["project"]["scripts"] == {"dialtone": "dialtone.commands:main"}


@pytest.mark.parametrize("target", list(COMMANDS))
def test_each_make_target_calls_its_subcommand(target: str) -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None, f"no make {target}"
    assert f"$(BIN)/dialtone {target}" in recipe[1]
