"""Check the inspector page in Firefox by hand: text `hours` from its phone, wait for the answer.

The browser tests drive Chromium (Playwright cannot drive a stock Firefox, and its own Firefox
build cannot be downloaded here); this drives Debian's Firefox ESR through Marionette instead:

    apt-get install firefox-esr
    python -m venv /tmp/ff && /tmp/ff/bin/pip install marionette-driver
    make dev                                   # in another terminal: note the Inspector URL
    /tmp/ff/bin/python scripts/firefox_smoke.py 'http://127.0.0.1:5057/?token=...' ff.png

It prints whether the phone showed the bot's reply and the timeline the webhook, and saves a
screenshot. Not part of `make test`: it needs a Firefox and a package the project does not pin.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from marionette_driver.by import By  # type: ignore[import-not-found]
from marionette_driver.marionette import Marionette  # type: ignore[import-not-found]

PORT = 2829  # Marionette's, on loopback
REPLY = "We're open"  # the start of rules.toml's answer to `hours`


def entries(text: str) -> int:
    """How many webhooks the timeline shows (each says its signature verdict)."""
    return text.count("signature valid")


def main(url: str, screenshot: Path) -> int:
    """Text `hours` from the page in Firefox; 0 when the reply and the timeline entry show."""
    profile = Path(tempfile.mkdtemp(prefix="dialtone-firefox-"))
    (profile / "user.js").write_text(f'user_pref("marionette.port", {PORT});\n')
    program = shutil.which("firefox-esr") or shutil.which("firefox")
    if program is None:
        sys.exit("No Firefox here: apt-get install firefox-esr")
    firefox = subprocess.Popen(
        [program, "--headless", "--marionette", "--no-remote", "--profile", str(profile)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        browser = Marionette(host="127.0.0.1", port=PORT)
        browser.start_session(timeout=60)
        browser.set_window_rect(width=1280, height=900)
        browser.navigate(url)
        browser.execute_script("window.speechSynthesis.speak = () => {}")
        text = browser.execute_script("return document.body.innerText")
        before, replies = entries(text), text.count(REPLY)
        browser.find_element(By.ID, "body").send_keys("hours")
        send = [b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Send"]
        send[0].click()
        deadline, shown, replied = time.monotonic() + 20, False, False
        while time.monotonic() < deadline and not (shown and replied):
            text = browser.execute_script("return document.body.innerText")
            shown, replied = entries(text) > before, text.count(REPLY) > replies
            time.sleep(0.5)
        print(f"timeline shows the new webhook: {shown}; phone shows the reply: {replied}")
        screenshot.write_bytes(browser.screenshot(format="binary"))
        browser.delete_session()
        return 0 if shown and replied else 1
    finally:
        firefox.terminate()
        firefox.wait(timeout=20)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2] if len(sys.argv) > 2 else "firefox.png")))
