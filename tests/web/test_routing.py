"""The route API: a file in routes/ is a route; what it may ask for; how it fails."""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import webtest

from dialtone import app as app_module
from dialtone import webhook
from dialtone.app import create_app
from dialtone.errors import DialtoneError
from dialtone.record.base import RecordStore
from dialtone.record.errors import StoreUnavailable
from dialtone.record.store import open_store
from dialtone.settings import Settings
from dialtone.web.routing import RouteError, load_routes, route_files, routes_of
from tests.conftest import API_TOKEN, signed_post
from tests.support.hello_route import HELLO_ROUTE, copy_routes

MakeApp = Callable[..., webtest.TestApp]
FORM = {"MessageSid": "SM" + "1" * 32, "From": "+15557654321", "Body": "hi"}


@pytest.fixture
def routes(tmp_path: Path) -> Path:
    """A copy of the project's routes directory that a test may add files to."""
    return copy_routes(tmp_path)


@pytest.fixture
def settings(settings: Settings, routes: Path) -> Settings:
    return settings.with_overrides(routes_dir=routes)


def test_the_five_line_route_is_a_signed_webhook(
    routes: Path, settings: Settings, make_app: MakeApp
) -> None:
    (routes / "hello.py").write_text(HELLO_ROUTE)
    app = make_app(settings)
    post = signed_post(app, settings.auth_token or "")

    reply = post("/hello", FORM, status=200)
    assert reply.content_type == "text/xml"
    message = ET.fromstring(reply.body).find("Message")
    assert message is not None
    assert message.text == "Hi +15557654321!"

    app.post("/hello", FORM, status=403)  # unsigned
    post("/hello", FORM, signature="forged", status=403)
    app.get("/hello", status=405)


def test_the_form_is_utf8_with_repeated_names_kept(
    routes: Path, settings: Settings, make_app: MakeApp
) -> None:
    (routes / "echo.py").write_text(
        "from dialtone import webhook\n\n"
        '@webhook("/echo")\n'
        "def echo(form):\n"
        "    return '<Response><Message>' + '|'.join(form.getall('Body')) + '</Message></Response>'\n"
    )
    app = make_app(settings.with_overrides(validate_signatures=False))
    reply = app.post("/echo", [("Body", "é"), ("Body", "☎")], status=200)
    assert "<Message>é|☎</Message>" in reply.text


def test_a_handler_that_raises_answers_an_empty_response_and_logs_the_traceback(
    settings: Settings, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    @webhook("/boom")
    def boom(form: object) -> None:
        raise RuntimeError("kaboom")

    app = make_app(settings.with_overrides(validate_signatures=False), routes=routes_of(boom))
    with caplog.at_level(logging.ERROR, logger="dialtone.routes"):
        reply = app.post("/boom", FORM, status=200)
    assert ET.fromstring(reply.body).tag == "Response"
    assert len(ET.fromstring(reply.body)) == 0
    assert "kaboom" not in reply.text
    assert "Traceback" in caplog.text
    assert "kaboom" in caplog.text


def test_a_handler_may_return_twiml_text_or_nothing(settings: Settings, make_app: MakeApp) -> None:
    @webhook("/text")
    def text(form: object) -> str:
        return "<Response><Say>hi</Say></Response>"

    @webhook("/nothing")
    def nothing(form: object) -> None:
        return None

    app = make_app(
        settings.with_overrides(validate_signatures=False), routes=routes_of(text, nothing)
    )
    assert "<Say>hi</Say>" in app.post("/text", FORM, status=200).text
    app.post("/nothing", FORM, status=204)


def test_a_handler_asks_for_what_it_needs_by_name(
    routes: Path, settings: Settings, make_app: MakeApp
) -> None:
    (routes / "whoami.py").write_text(
        "from twilio.twiml.messaging_response import MessagingResponse\n"
        "from dialtone import webhook\n\n"
        '@webhook("/whoami")\n'
        "def whoami(form, settings, rules, record, twilio):\n"
        "    reply = MessagingResponse()\n"
        "    reply.message(f\"{settings.phone_number} {rules.reply('hours')[:8]}\")\n"
        "    return reply\n"
    )
    app = make_app(settings.with_overrides(validate_signatures=False))
    assert f"{settings.phone_number} We're op" in app.post("/whoami", FORM, status=200).text


def test_asking_for_something_unknown_is_refused_at_start_up(
    routes: Path, settings: Settings
) -> None:
    (routes / "wants_db.py").write_text(
        "from dialtone import webhook\n\n@webhook('/db')\ndef needs_db(form, db):\n    return None\n"
    )
    with pytest.raises(RouteError) as caught:
        create_app(settings)
    message = str(caught.value)
    assert "needs_db()" in message
    assert "wants_db.py, line 3" in message
    assert "'db'" in message
    assert "settings" in message  # what it could ask for
    assert "docs/routes.md" in message


def test_an_app_that_cannot_be_made_closes_the_record_it_opened(
    routes: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A route found wanting only when mounted, after the record and its thread were opened.
    (routes / "wants_db.py").write_text(
        "from dialtone import webhook\n\n@webhook('/db')\ndef needs_db(form, db):\n    return None\n"
    )
    opened: list[RecordStore] = []

    def open_and_keep(given: Settings) -> RecordStore:
        opened.append(open_store(given))
        return opened[-1]

    monkeypatch.setattr(app_module, "open_store", open_and_keep)
    threads = set(threading.enumerate())
    with pytest.raises(RouteError):
        create_app(settings)
    (store,) = opened
    with pytest.raises(StoreUnavailable, match="closed"):
        store.message("SM" + "0" * 32)
    assert set(threading.enumerate()) <= threads  # the kept opt-outs' thread stopped too


def test_a_misspelt_parameter_is_offered_the_close_name(routes: Path, settings: Settings) -> None:
    (routes / "typo.py").write_text(
        "from dialtone import webhook\n\n\n@webhook('/typo')\ndef typo(form, setings):\n"
        "    return None\n"
    )
    with pytest.raises(RouteError, match=r"asks for 'setings'.*Did you mean 'settings'\?"):
        create_app(settings)


@pytest.mark.parametrize(
    ("source", "line", "what"),
    [
        ("from dialtone import webhook\n\ndef broken(:\n    pass\n", 3, "SyntaxError"),
        ("from dialtone import webhook\nimport no_such_module_here\n", 2, "ModuleNotFoundError"),
        ("x = 1\ny = 2\nraise RuntimeError('nope')\n", 3, "RuntimeError: nope"),
    ],
)
def test_a_broken_route_module_is_one_paragraph_naming_the_file_and_line(
    routes: Path, settings: Settings, source: str, line: int, what: str
) -> None:
    (routes / "broken.py").write_text(source)
    with pytest.raises(RouteError) as caught:
        create_app(settings)
    assert isinstance(caught.value, DialtoneError)  # the entry points print it, no traceback
    message = str(caught.value)
    assert "broken.py cannot be loaded" in message
    assert f"line {line}" in message
    assert what in message
    assert "\n" not in message
    assert "Traceback" not in message


def test_two_routes_on_one_path_are_refused_naming_both(routes: Path, settings: Settings) -> None:
    (routes / "again.py").write_text(
        "from dialtone import webhook\n\n\n@webhook('/sms_url')\ndef mine(form):\n    return None\n"
    )
    with pytest.raises(RouteError) as caught:
        create_app(settings)
    message = str(caught.value)
    assert "POST /sms_url" in message
    assert "mine() (" in message
    assert "again.py, line 4" in message
    assert "sms_url() (" in message
    assert "sms.py" in message


def test_routes_are_found_in_file_name_order_and_definition_order(routes: Path) -> None:
    (routes / "_private.py").write_text("raise RuntimeError('never loaded')\n")
    (routes / "b.py").write_text(
        "from dialtone import webhook\n\n@webhook('/b2')\ndef z(form): pass\n\n"
        "@webhook('/b1')\ndef a(form): pass\n"
    )
    (routes / "a.py").write_text(
        "from dialtone import webhook\n\n@webhook('/a')\ndef a(form): pass\n"
    )
    names = [path.name for path in route_files(routes)]
    assert names == sorted(names)
    assert "_private.py" not in names
    paths = [spec.path for spec in load_routes(routes)]
    assert paths.index("/a") < paths.index("/b2") < paths.index("/b1")
    assert paths.index("/b1") < paths.index("/voice_url")  # voice.py comes after b.py


def test_an_api_route_cannot_skip_the_token(
    routes: Path, settings: Settings, make_app: MakeApp
) -> None:
    (routes / "ping.py").write_text(
        "from dialtone import api\n\n@api('/ping')\ndef ping(settings):\n"
        "    return {'number': settings.phone_number}\n"
    )
    app = make_app(settings)
    app.get("/ping", status=401)
    app.get("/ping", headers={"Authorization": "Bearer wrong"}, status=403)
    reply = app.get("/ping", headers={"Authorization": f"Bearer {API_TOKEN}"}, status=200)
    assert reply.json == {"number": settings.phone_number}
    app.post("/ping", status=405)


def test_an_api_handler_that_raises_is_a_plain_json_500(
    routes: Path, settings: Settings, make_app: MakeApp
) -> None:
    (routes / "bad.py").write_text(
        "from dialtone import api\n\n@api('/bad', method='POST')\ndef bad(payload):\n"
        "    raise KeyError('secret detail')\n"
    )
    app = make_app(settings)
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    reply = app.post_json("/bad", {"a": 1}, headers=headers, status=500)
    assert reply.json["error"]["status"] == 500
    assert "secret detail" not in reply.text
    app.post("/bad", "not json", headers=headers, status=400)


def test_route_paths_must_start_with_a_slash() -> None:
    with pytest.raises(ValueError, match="starts with '/'"):
        webhook("hello")


def test_a_route_imports_its_helpers_from_the_routes_directory(
    routes: Path, settings: Settings, make_app: MakeApp
) -> None:
    (routes / "_greeting.py").write_text("def greet(name):\n    return f'Hello {name}'\n")
    (routes / "greet.py").write_text(
        "from twilio.twiml.messaging_response import MessagingResponse\n"
        "from dialtone import webhook\n"
        "from routes._greeting import greet\n\n"
        "@webhook('/greet')\n"
        "def greeting(form):\n"
        "    reply = MessagingResponse()\n"
        "    reply.message(greet(form['From']))\n"
        "    return reply\n"
    )
    app = make_app(settings.with_overrides(validate_signatures=False))
    assert "Hello +15557654321" in app.post("/greet", FORM, status=200).text
