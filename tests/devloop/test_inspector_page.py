"""The inspector page in a real headless Chromium (Playwright), against a real `make dev` in
sandbox mode: one dev loop for the module, one browser for the session, a fresh page per test."""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

from dialtone.devloop.inspector.replay import Target
from dialtone.devloop.inspector.server import InspectorServer, PageInfo
from dialtone.sandbox.state import PHONE_USER_NUMBER
from tests.conftest import REPO
from tests.support.browser import (
    SPEECH_STUB,
    browser_context_args,
    browser_type_launch_args,
    screenshot,
    skip_without_chromium,
)
from tests.support.dev_process import DevProcess
from tests.support.live_server import free_socket
from tests.support.media_server import media_server
from tests.support.twilio_signing import sign

__all__ = ["browser_context_args", "browser_type_launch_args"]  # pytest-playwright overrides
skip_without_chromium()

API_TOKEN = "inspector-test-api-token-0123456789"
expect.set_options(timeout=15_000)


def free_port() -> int:
    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@dataclass
class Dev:
    """The running dev loop: its inspector URL (with the token) and where the app listens."""

    process: DevProcess
    page_url: str
    app_url: str
    rules: Path
    music_fetched: list[str] = field(default_factory=list)  # paths the hold music server served


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """`make dev` without credentials (the sandbox), as a newcomer runs it."""
    tmp = tmp_path_factory.mktemp("inspector")
    rules = tmp / "rules.toml"
    shutil.copy(REPO / "rules.toml", rules)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWILIO_", "NGROK_", "PUBLIC_URL", "API_TOKEN"))
    }
    port = free_port()
    fetched: list[str] = []
    music = media_server(fetched)
    env.update(
        HOLD_MUSIC_URL=f"http://127.0.0.1:{music.server_address[1]}/hold.wav",
        PORT=str(port),
        SANDBOX_PORT=str(free_port()),
        INSPECTOR_PORT=str(free_port()),
        RULES_FILE=str(rules),
        ROUTES_DIR=str(REPO / "routes"),
        DATABASE_PATH=str(tmp / "dialtone.db"),
        API_TOKEN=API_TOKEN,
    )
    process = DevProcess(env, tmp)
    try:
        process.wait_for("Ready in")
        found = re.search(r"Inspector\s+(http://127\.0\.0\.1:\d+/\?token=[\w-]+)", process.output)
        assert found, process.output
        yield Dev(process, found.group(1), f"http://127.0.0.1:{port}", rules, fetched)
        assert process.stop() == 0
    finally:
        process.kill_group()
        music.shutdown()
        music.server_close()


@pytest.fixture
def inspector(page: Page, dev: Dev) -> Page:
    """The inspector page, speech synthesis stubbed so what it says can be read back."""
    page.add_init_script(SPEECH_STUB)
    page.goto(dev.page_url)
    expect(page.get_by_text("● live")).to_be_visible()
    return page


def text_from_page(page: Page, body: str) -> None:
    page.get_by_label("Message", exact=True).fill(body)
    page.get_by_role("button", name="Send", exact=True).click()


def post(url: str, data: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def app_api(dev: Dev, path: str, payload: dict[str, str]) -> int:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_TOKEN}"}
    return post(dev.app_url + path, json.dumps(payload).encode(), headers)


def test_text_hours_and_see_the_reply_and_the_webhook_with_its_twiml(
    inspector: Page, dev: Dev
) -> None:
    text_from_page(inspector, "hours")
    expect(inspector.get_by_role("list", name="Messages")).to_contain_text("open 9:00 to 17:00")
    webhook = inspector.locator("li.entry.webhook").filter(has_text="POST /sms_url").first
    expect(webhook).to_contain_text("✔ signature valid")
    expect(webhook.get_by_role("list", name="What the answer does")).to_contain_text(
        "Text 'We're open 9:00 to 17:00"
    )
    webhook.get_by_text("TwiML", exact=True).click()
    expect(webhook.locator("pre.twiml")).to_contain_text("<Message>We're open")
    screenshot(inspector, "inspector-sandbox")
    # A reload loses nothing recent: the timeline and the reply come back.
    inspector.reload()
    expect(inspector.locator("li.entry.webhook").filter(has_text="Body")).not_to_have_count(0)
    expect(inspector.get_by_role("list", name="Messages")).to_contain_text("open 9:00 to 17:00")


def test_call_hear_the_greeting_press_1_and_the_call_ends(inspector: Page) -> None:
    inspector.get_by_role("button", name="Call", exact=True).click()
    expect(inspector.get_by_role("button", name="Hang up")).to_be_visible()
    expect(inspector.get_by_role("list", name="Call transcript")).to_contain_text("Press 1 key")
    spoken = inspector.evaluate("window.__spoken")
    assert spoken[0].startswith("Hello, and thank you for calling")
    inspector.get_by_role("button", name="1", exact=True).click()
    expect(inspector.locator("#call-state")).to_have_text(re.compile("Call ended"))
    assert any("answered by Dialtone" in said for said in inspector.evaluate("window.__spoken"))
    call = inspector.locator("li.group").filter(has_text="Digits").first
    expect(call.locator(".steps").first).to_contain_text("Gather 1 key, then /voice_url/menu")
    expect(call.locator("li.entry.status")).to_contain_text("completed")
    screenshot(inspector, "inspector-call")


@pytest.mark.parametrize("how", ["typed", "microphone"])
def test_leave_a_message_typed_or_from_the_microphone(inspector: Page, how: str) -> None:
    inspector.get_by_role("button", name="Call", exact=True).click()
    expect(inspector.get_by_role("list", name="Call transcript")).to_contain_text("Press 1 key")
    inspector.keyboard.press("2")  # the keyboard's digits are the keypad during a call
    expect(inspector.get_by_label("Recording: type what you say")).to_be_visible()
    if how == "typed":
        inspector.get_by_label("Recording: type what you say").fill("Call me back please")
        inspector.get_by_role("button", name="Speak typed words").click()
    else:  # Chromium's fake microphone: the sandbox hears "speaking" while it is on
        inspector.context.grant_permissions(["microphone"])
        inspector.get_by_role("button", name="Use microphone").click()
        expect(inspector.get_by_role("button", name="Microphone on…")).to_be_visible()
        inspector.wait_for_timeout(1500)  # at least one "speaking" tick reaches the sandbox
    inspector.get_by_role("button", name="Stop recording").click()
    expect(inspector.locator("#call-state")).to_have_text(re.compile("Call ended"))
    assert any(
        "message has been recorded" in said for said in inspector.evaluate("window.__spoken")
    )
    route = inspector.locator("strong.route", has_text="POST /voice_url/recorded")
    recorded = inspector.locator("li.entry.webhook").filter(has=route).first
    expect(recorded.locator("dl.highlights")).to_contain_text("RecordingUrl")
    if how == "microphone":
        expect(inspector.locator("#recorded")).to_have_attribute("src", re.compile("^blob:"))


def test_hold_music_plays_in_the_page(inspector: Page, dev: Dev) -> None:
    inspector.get_by_role("button", name="Call", exact=True).click()
    expect(inspector.get_by_role("list", name="Call transcript")).to_contain_text("Press 1 key")
    inspector.get_by_role("button", name="5", exact=True).click()
    transcript = inspector.get_by_role("list", name="Call transcript")
    expect(transcript).to_contain_text("Plays: http://127.0.0.1:")
    # The page's audio element fetched the URL (the sandbox itself never fetches media).
    for _ in range(100):
        if "/hold.wav" in dev.music_fetched:
            break
        inspector.wait_for_timeout(100)
    assert "/hold.wav" in dev.music_fetched
    expect(transcript).not_to_contain_text("could not play")
    inspector.get_by_role("button", name="Hang up").click()
    expect(inspector.locator("#call-state")).to_have_text(re.compile("Call ended"))


def test_an_outbound_text_then_its_status_callbacks_in_order(inspector: Page, dev: Dev) -> None:
    assert (
        app_api(dev, "/send_sms", {"to": PHONE_USER_NUMBER, "body": "Your table is ready"}) == 201
    )
    expect(inspector.get_by_role("list", name="Messages")).to_contain_text("Your table is ready")
    outbound = inspector.locator("li.group").filter(has_text="Outbound text").first
    expect(outbound.locator("li.entry.status .pill").last).to_have_text("delivered")
    statuses = outbound.locator("li.entry.status .pill").all_inner_texts()
    rank = ["queued", "sending", "sent", "delivered"]
    assert statuses == sorted(statuses, key=rank.index)
    assert statuses[-2:] == ["sent", "delivered"]
    assert outbound.locator("li.entry").first.get_attribute("class") == "entry api"


def test_edit_the_rules_replay_and_see_the_new_answer_beside_the_old(
    inspector: Page, dev: Dev
) -> None:
    text_from_page(inspector, "joke")
    entry = inspector.locator("li.entry.webhook").filter(has_text="joke").first
    expect(entry).to_contain_text("It lost its contacts")
    dev.rules.write_text(
        dev.rules.read_text().replace("It lost its contacts.", "It had too many tabs open.")
    )
    entry.get_by_role("button", name="Replay", exact=True).click()
    compare = entry.locator(".compare")
    expect(compare.locator(".side-by-side").nth(0)).to_contain_text("It lost its contacts")
    expect(compare.locator(".side-by-side").nth(1)).to_contain_text("It had too many tabs open")
    changes = compare.get_by_role("list", name="What changed")
    expect(changes.locator("li.removed")).to_contain_text("- Text 'Why did the phone")
    expect(changes.locator("li.added")).to_contain_text("too many tabs open")
    screenshot(entry, "inspector-replay")
    # With an edited parameter, signed afresh: the app answers the new Body.
    entry.get_by_text("Edit parameters").click()
    entry.get_by_label("Body", exact=True).fill("hours")
    entry.get_by_role("button", name="Replay edited").click()
    expect(compare.locator(".side-by-side").nth(1)).to_contain_text("open 9:00")


def test_a_forged_request_shows_in_red_with_what_to_fix(inspector: Page, dev: Dev) -> None:
    form = {"MessageSid": "SM" + "f" * 32, "From": "+15550009999", "To": "+15005550006"}
    signature = sign("not-the-auth-token", dev.app_url + "/sms_url", form)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    data = urllib.parse.urlencode({**form, "Body": "forged"}).encode()
    assert post(dev.app_url + "/sms_url", data, headers) == 403
    forged = inspector.locator("li.entry.bad").filter(has_text="forged")
    alert = forged.get_by_role("alert")
    expect(alert).to_contain_text("signature does not match")
    expect(alert).to_contain_text(f"Checked against {dev.app_url}/sms_url")
    expect(alert).to_have_css("color", "rgb(185, 28, 28)")
    expect(forged.locator(".http")).to_have_text("403")
    # Filter by number: only the forger's conversation is left.
    inspector.get_by_label("Filter by number").fill("+1 555 000 9999")
    expect(inspector.locator("li.group:visible")).to_have_count(1)
    expect(inspector.locator("li.group:visible")).to_contain_text("forged")
    inspector.get_by_label("Filter by number").fill("")
    expect(inspector.locator("li.group:visible")).not_to_have_count(1)


def test_html_in_a_text_is_shown_as_text(inspector: Page) -> None:
    dialogs: list[str] = []

    def refuse(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    inspector.on("dialog", refuse)
    payload = "<img src=x onerror=alert(1)>"
    inspector.get_by_label("Media URLs").fill("http://127.0.0.1:9/cat.jpg")  # nothing listens
    text_from_page(inspector, payload)
    mine = inspector.get_by_role("list", name="Messages").locator("li.mine").last
    expect(mine.get_by_role("link")).to_have_text("http://127.0.0.1:9/cat.jpg")
    expect(inspector.get_by_role("list", name="Messages")).to_contain_text(f'You said: "{payload}"')
    entry = inspector.locator("li.entry.webhook").filter(has_text=payload).first
    expect(entry.locator("dd").filter(has_text=payload)).to_have_text(payload)
    assert inspector.locator("img[src='x']").count() == 0
    assert dialogs == []


def test_a_text_after_stop_shows_why_no_reply_comes(inspector: Page) -> None:
    messages = inspector.get_by_role("list", name="Messages")
    text_from_page(inspector, "STOP")
    expect(messages).to_contain_text("You have successfully been unsubscribed")
    # Twilio's own answer, labelled as the terminal phone labels it.
    expect(messages.locator("li.theirs").last).to_contain_text(
        "Twilio (automatic reply for +15005550006)"
    )
    try:
        text_from_page(inspector, "anyone there?")
        notice = messages.locator("li.notice").last
        expect(notice).to_contain_text("This phone texted STOP to +15005550006")
    finally:
        text_from_page(inspector, "START")  # the page's other tests text this number too
        expect(messages).to_contain_text("You have successfully been re-subscribed")


def test_answer_and_decline_a_call_from_make_call(inspector: Page, dev: Dev) -> None:
    assert (
        app_api(dev, "/make_call", {"to": PHONE_USER_NUMBER, "message": "Your order is ready"})
        == 201
    )
    inspector.get_by_role("button", name="Answer").click()
    expect(inspector.get_by_role("list", name="Call transcript")).to_contain_text(
        "Your order is ready"
    )
    expect(inspector.locator("#call-state")).to_have_text(re.compile("Call ended"))
    assert "Your order is ready" in " ".join(inspector.evaluate("window.__spoken"))
    assert app_api(dev, "/make_call", {"to": PHONE_USER_NUMBER, "message": "Second call"}) == 201
    inspector.get_by_role("button", name="Decline").click()
    expect(inspector.locator("#call-state")).to_have_text(re.compile("Declined|Call ended"))
    assert "Second call" not in " ".join(inspector.evaluate("window.__spoken"))


def test_every_control_has_an_accessible_name(inspector: Page) -> None:
    for name in ["Send", "Call", *"0123456789*#"]:
        expect(inspector.get_by_role("button", name=name, exact=True)).to_have_count(1)
    for label in ["Message", "Media URLs", "Filter by number"]:
        expect(inspector.get_by_label(re.compile(label))).not_to_have_count(0)
    # Keyboard: type a text and send it without the mouse.
    inspector.get_by_label("Message", exact=True).focus()
    inspector.keyboard.type("where")
    inspector.keyboard.press("Enter")
    expect(inspector.locator("li.entry.webhook dd").filter(has_text="where")).not_to_have_count(0)


def test_a_foreign_host_or_origin_is_refused(dev: Dev) -> None:
    url = dev.page_url
    base, token = url.split("/?token=")
    port = base.rsplit(":", 1)[1]
    info = urllib.request.Request(f"{base}/api/info?token={token}")
    info.add_header("Host", f"rebinding.example:{port}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(info, timeout=5)
    assert refused.value.code == 403
    replay = {"Content-Type": "application/json", "X-Dialtone-Token": token}
    assert (
        post(f"{base}/api/replay", b'{"id": 1}', {**replay, "Origin": "http://evil.example"}) == 403
    )
    form = {"Content-Type": "application/x-www-form-urlencoded", "X-Dialtone-Token": token}
    assert post(f"{base}/api/replay", b"id=1", form) == 415
    plain = {"Content-Type": "text/plain", "X-Dialtone-Token": token}
    assert post(f"{base}/api/replay", b'{"id": 1}', plain) == 415
    assert (
        post(f"{base}/api/phone/messages", b'{"body": "hi"}', {"Content-Type": "application/json"})
        == 403
    )


def test_a_page_left_open_across_make_dev_runs_says_to_open_the_new_url(page: Page) -> None:
    def inspector(port: int, token: str | None = None) -> InspectorServer:
        server = InspectorServer(
            port=port,
            token=token,
            target=Target("http://127.0.0.1:9", "https://abc.ngrok.app", "token"),
            info=PageInfo(
                mode="Twilio", phone_number="+15550001111", public_url="https://abc.ngrok.app"
            ),
        )
        server.start()
        return server

    first = inspector(0)
    try:
        page.goto(first.url)
        expect(page.get_by_text("● live")).to_be_visible()
    finally:
        first.stop()
    expect(page.get_by_text("○ reconnecting…")).to_be_visible()
    again = inspector(first.port, first.token)  # the same run's inspector, back: not stale
    try:
        expect(page.get_by_text("● live")).to_be_visible()
        expect(page.locator("#run")).not_to_contain_text("earlier make dev")
    finally:
        again.stop()
    second = inspector(first.port)  # the next make dev: the same port, another token
    try:
        expect(page.locator("#run")).to_contain_text("This page is from an earlier make dev")
        expect(page.locator("#qr")).to_be_hidden()
    finally:
        second.stop()


def test_with_a_real_account_the_page_is_the_inspector_and_a_qr_code(page: Page) -> None:
    server = InspectorServer(
        port=0,
        target=Target("http://127.0.0.1:9", "https://abc.ngrok.app", "token"),
        info=PageInfo(
            mode="Twilio", phone_number="+15550001111", public_url="https://abc.ngrok.app"
        ),
    )
    server.start()
    # What the app child would have sent: a text, and a webhook whose signature was made for
    # another URL (the usual mistake with a real number: PUBLIC_URL is not the number's URL).
    form = [["MessageSid", "SM" + "c" * 32], ["From", "+15557654321"], ["To", "+15550001111"]]
    for body, verdict, status in (("hours", "valid", 200), ("hello", "mismatch", 403)):
        answer = "<Response><Message>We're open 9 to 5.</Message></Response>"
        server.timeline.add(
            {
                "method": "POST",
                "path": "/sms_url",
                "form": [*form, ["Body", body]],
                "time": 1_800_000_000 + status,
                "duration_ms": 2.5,
                "status": status,
                "answer": answer if status == 200 else "Invalid or missing X-Twilio-Signature.",
                "webhook": {"verdict": verdict, "url": "https://abc.ngrok.app/sms_url"},
            }
        )
        form[0][1] = "SM" + "d" * 32
    try:
        page.goto(server.url)
        qr = page.get_by_role("img", name="QR code that opens a text to the number")
        expect(qr).to_be_visible()
        assert page.evaluate("document.getElementById('qr-image').naturalWidth") > 0
        expect(page.get_by_role("button", name="Call", exact=True)).to_be_hidden()
        expect(page.locator("#run")).to_contain_text("+15550001111")
        expect(page.get_by_role("alert")).to_contain_text("signature does not match")
        screenshot(page, "inspector-twilio")
    finally:
        server.stop()
