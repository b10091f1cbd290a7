"""The docs stay true: settings agree with .env.example and docs/configuration.md; links resolve."""

from __future__ import annotations

import ast
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SETTINGS_PY = REPO / "dialtone" / "settings.py"
ENV_EXAMPLE = REPO / ".env.example"
CONFIG_DOC = REPO / "docs" / "configuration.md"

# Pages other helpers are writing on their branches; the links to them resolve once those
# branches are merged. Remove this skip list after the merge.
PAGES_WRITTEN_ELSEWHERE = frozenset(
    {
        "docs/deployment.md",
        "docs/security.md",
        "docs/sandbox-fidelity.md",
    }
)

NAME = r"[A-Z][A-Z0-9_]*"
SETTING_ROW = re.compile(rf"^\|\s*`({NAME})`\s*\|")
ENV_LINE = re.compile(rf"^({NAME})=")
ENV_GROUP = re.compile(r"^#\s*---\s*(.+?)\s*---\s*$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~)")


def settings_names() -> list[str]:
    """The variable names `Settings.from_env` reads: the first argument of each `reader.get()`."""
    tree = ast.parse(SETTINGS_PY.read_text(encoding="utf-8"))
    from_env = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "from_env"
    )
    names = []
    for node in ast.walk(from_env):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "reader"
        ):
            first = node.args[0] if node.args else None
            assert isinstance(first, ast.Constant), "reader.get() takes the name as a literal"
            assert isinstance(first.value, str)
            names.append(first.value)
    return names


def group_title(heading: str) -> str:
    """A group's title without its parenthesised note: 'The record (SQLite)' -> 'The record'."""
    return heading.split(" (", 1)[0].strip()


def env_example_entries() -> list[tuple[str, str]]:
    """(name, group) for every assignment in .env.example, in file order."""
    entries, group = [], ""
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if heading := ENV_GROUP.match(line):
            group = group_title(heading.group(1))
        elif assignment := ENV_LINE.match(line):
            entries.append((assignment.group(1), group))
    return entries


def config_doc_entries() -> list[tuple[str, str]]:
    """(name, group) for every settings-table row of docs/configuration.md, in page order."""
    entries, group = [], ""
    for line in prose_lines(CONFIG_DOC):
        if line.startswith("## "):
            group = group_title(line[3:])
        elif row := SETTING_ROW.match(line):
            entries.append((row.group(1), group))
    return entries


def prose_lines(path: Path) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def duplicates(names: list[str]) -> list[str]:
    """The names that appear more than once."""
    return sorted(name for name, count in Counter(names).items() if count > 1)


def test_settings_reads_some_names() -> None:
    # Guards the parser: if from_env stops using reader.get(), this test must be rewritten.
    assert len(settings_names()) > 20


def names_in(source: str) -> list[str]:
    """The setting names one of the three sources lists, repeats included."""
    if source == "Settings.from_env":
        return settings_names()
    entries = env_example_entries() if source == ".env.example" else config_doc_entries()
    return [name for name, _ in entries]


@pytest.mark.parametrize("source", ["Settings.from_env", ".env.example", "docs/configuration.md"])
def test_each_setting_is_listed_once(source: str) -> None:
    assert duplicates(names_in(source)) == [], f"listed more than once in {source}"


def test_settings_env_example_and_docs_list_the_same_names() -> None:
    in_code = set(settings_names())
    in_example = {name for name, _ in env_example_entries()}
    in_docs = {name for name, _ in config_doc_entries()}
    assert in_example - in_code == set(), ".env.example has names Settings.from_env never reads"
    assert in_code - in_example == set(), "Settings.from_env reads names .env.example lacks"
    assert in_docs - in_code == set(), "docs/configuration.md has names Settings never reads"
    assert in_code - in_docs == set(), "Settings.from_env reads names docs/configuration.md lacks"


def test_env_example_is_grouped_like_the_docs() -> None:
    assert dict(env_example_entries()) == dict(config_doc_entries())


def markdown_files() -> list[Path]:
    """README.md and every page under docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("**/*.md"))]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N"))
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (repeated headings get -1, -2, ...)."""
    seen: Counter[str] = Counter()
    found = set()
    for line in prose_lines(path):
        if match := re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line):
            slug = github_slug(match.group(1))
            found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
            seen[slug] += 1
    return found


def relative_links(path: Path) -> list[str]:
    """The link targets in a Markdown file that are not URLs (code blocks and spans skipped)."""
    targets = []
    for line in prose_lines(path):
        line = re.sub(r"`[^`]*`", "", line)
        for target in LINK.findall(line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                targets.append(target)
    return targets


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        name = linked.relative_to(REPO).as_posix() if linked.is_relative_to(REPO) else str(linked)
        if name in PAGES_WRITTEN_ELSEWHERE:
            continue
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == []


def test_the_link_checker_finds_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n[ok](#title), [gone](missing.md), [url](https://example.com)\n"
        "```\n[in code](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert relative_links(page) == ["#title", "missing.md"]
    assert anchors(page) == {"title"}


def test_github_slug() -> None:
    assert github_slug("The dev loop: `make dev`") == "the-dev-loop-make-dev"
    assert github_slug("Opt-outs (STOP, START, HELP)") == "opt-outs-stop-start-help"


def makefile_targets() -> set[str]:
    """The targets the Makefile defines (`name: ...` lines)."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][a-z0-9_-]*):", text, re.MULTILINE))


def make_commands(path: Path) -> list[str]:
    """The targets of every `make ...` command in a page's code spans and code blocks."""
    text = path.read_text(encoding="utf-8")
    code = re.findall(r"```[^\n]*\n(.*?)```", text, re.DOTALL)
    code += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    return [
        target
        for snippet in code
        for target in re.findall(r"(?:^|[\s;(])make ([a-z][a-z0-9_-]*)", snippet, re.MULTILINE)
    ]


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_documented_make_targets_exist(page: Path) -> None:
    unknown = sorted(set(make_commands(page)) - makefile_targets())
    assert unknown == [], f"{page.name} documents make targets the Makefile does not have"


def test_readme_stays_short() -> None:
    # The README is the way in; the details live in docs/. About 200 lines at most.
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 210, f"README.md has {lines} lines; move details to docs/"
