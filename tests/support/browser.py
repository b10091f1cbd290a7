"""Debian's Chromium for the browser tests (Playwright's own download cannot be reached here).

A test module calls `skip_without_chromium()` first (without Chromium it skips, in one line)
and imports `browser_type_launch_args` and `browser_context_args` to override pytest-playwright's
fixtures.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page

from tests.conftest import REPO

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # A fake microphone for the phone's <Record>, granted per test.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # <Play> starts without a click in the page, as a phone's audio does.
    "--autoplay-policy=no-user-gesture-required",
]
SKIP = "browser tests need Debian's Chromium: apt-get install -y chromium (or CHROMIUM=/path)"
SCREENSHOTS = REPO / "docs" / "img"
# The page stubs speech synthesis so tests can read what it would have said.
SPEECH_STUB = """
window.__spoken = [];
if (window.speechSynthesis) {
  window.speechSynthesis.speak = (utterance) => window.__spoken.push(utterance.text);
}
"""


def skip_without_chromium() -> None:
    """Skip the calling test module (one line in the summary) when Chromium is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(SKIP, allow_module_level=True)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options with Debian's Chromium."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    """A projector-sized window."""
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


def screenshot(shown: Page | Locator, name: str) -> None:
    """Save docs/img/<name>.png of a page (its window) or one element, when
    UPDATE_SCREENSHOTS=1: the docs' pictures are taken by these tests, so they stay true."""
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shown.screenshot(path=str(SCREENSHOTS / f"{name}.png"), animations="disabled")
