"""The OpenAPI checker catches what it should, and the sandbox's own answers satisfy the schemas."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from dialtone.sandbox.api.openapi import SPEC_PATH, Violation, load_spec
from dialtone.sandbox.api.rest import Params, list_page
from dialtone.sandbox.server import SandboxServer
from dialtone.sandbox.state import ACCOUNT_SID, AUTH_TOKEN, SandboxState

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = f"/2010-04-01/Accounts/{ACCOUNT_SID}"
MESSAGES = f"{ACCOUNT}/Messages.json"
CALL = f"{ACCOUNT}/Calls/CA{'0' * 32}.json"
NUMBER = f"{ACCOUNT}/IncomingPhoneNumbers/PN{'0' * 32}.json"


def problems(violations: list[Violation]) -> list[str]:
    return [v.problem for v in violations]


# --- requests ---------------------------------------------------------------------------------


def test_a_valid_request_has_no_violations() -> None:
    form = [("To", "+15555550100"), ("From", "+15005550006"), ("Body", "hi")]
    form += [("MediaUrl", "https://x.example/a.png"), ("MediaUrl", "https://x.example/b.png")]
    assert load_spec().check_request("POST", MESSAGES, form=form) == []


def test_missing_required_parameter() -> None:
    found = load_spec().check_request("POST", MESSAGES, form=[("Body", "hi")])
    assert problems(found) == ["required parameter To is missing"]
    assert found[0].where == "POST /2010-04-01/Accounts/{AccountSid}/Messages.json request"


def test_bad_enum() -> None:
    found = load_spec().check_request("POST", CALL, form=[("Status", "hung-up")])
    assert problems(found) == ["parameter Status='hung-up' is not one of canceled, completed"]
    found = load_spec().check_request("POST", NUMBER, form=[("VoiceMethod", "PUT")])
    assert problems(found) == ["parameter VoiceMethod='PUT' is not one of GET, POST"]


def test_unknown_parameter() -> None:
    found = load_spec().check_request("POST", NUMBER, form=[("VoiceURL", "https://x.example/")])
    assert problems(found) == ["unknown parameter VoiceURL"]
    found = load_spec().check_request("GET", MESSAGES, query=[("Limit", "5")])
    assert problems(found) == ["unknown query parameter Limit"]


@pytest.mark.parametrize(
    ("method", "path", "form", "query", "problem"),
    [
        ("POST", NUMBER, [("VoiceCallerIdLookup", "yes")], [], "is not true or false"),
        ("POST", CALL, [("TimeLimit", "ten")], [], "is not an integer"),
        ("GET", MESSAGES, [], [("PageSize", "1001")], "is above the maximum 1000"),
        ("POST", NUMBER, [("SmsUrl", "/sms")], [], "is not an absolute http(s) URL"),
        ("POST", MESSAGES, [("To", "+1"), ("To", "+2")], [], "is given 2 times but is not a list"),
        ("GET", f"{ACCOUNT}/Calls/XX{'0' * 32}.json", [], [], "does not match ^CA[0-9a-fA-F]{32}$"),
        ("GET", MESSAGES, [("Body", "x")], [], "GET must not have a form body"),
        ("DELETE", MESSAGES, [], [], "no such operation in the description"),
    ],
    ids=[
        "boolean",
        "integer",
        "maximum",
        "uri",
        "repeated",
        "path pattern",
        "GET body",
        "operation",
    ],
)
def test_types_and_shapes(
    method: str, path: str, form: list[Any], query: list[Any], problem: str
) -> None:
    found = problems(load_spec().check_request(method, path, form=form, query=query))
    assert len(found) == 1
    assert problem in found[0]


def test_media_urls_format_is_not_checked_as_the_spec_says() -> None:
    # Quirk: MediaUrl items are `format: uri` with x-twilio.ignoreFormat.
    form = [("To", "+15555550100"), ("MediaUrl", "not/absolute")]
    assert load_spec().check_request("POST", MESSAGES, form=form) == []


# --- responses --------------------------------------------------------------------------------


def test_the_sandboxs_resources_satisfy_the_response_schemas() -> None:
    spec = load_spec()
    state = SandboxState()
    number = state.numbers()[0]
    state.update_number(number.sid, voice_url="https://x.example/v", voice_caller_id_lookup=True)
    sms = state.create_message(to="+15555550100", from_="+15005550006", body="hi")
    mms = state.record_inbound_message(from_="+15555550100", to="+15005550006", media_urls=["u"])
    state.set_message_status(sms.sid, "delivered")
    call = state.create_call(to="+15555550100", from_="+15005550006", url="https://x.example/v")
    state.set_call_status(call.sid, "in-progress")
    state.set_call_status(call.sid, "completed")
    base = f"{ACCOUNT}"
    checks = [
        (
            "GET",
            f"{base}/IncomingPhoneNumbers/{number.sid}.json",
            200,
            state.number(number.sid).to_json(),
        ),
        (
            "POST",
            f"{base}/IncomingPhoneNumbers/{number.sid}.json",
            200,
            state.number(number.sid).to_json(),
        ),
        ("POST", f"{base}/Messages.json", 201, state.message(sms.sid).to_json()),
        ("GET", f"{base}/Messages/{mms.sid}.json", 200, state.message(mms.sid).to_json()),
        ("POST", f"{base}/Calls.json", 201, state.call(call.sid).to_json()),
        ("POST", f"{base}/Calls/{call.sid}.json", 200, state.call(call.sid).to_json()),
    ]
    lists = [
        (
            "IncomingPhoneNumbers.json",
            "incoming_phone_numbers",
            [n.to_json() for n in state.numbers()],
        ),
        ("Messages.json", "messages", [m.to_json() for m in state.messages()]),
        ("Calls.json", "calls", [c.to_json() for c in state.calls()]),
    ]
    for resource, key, items in lists:
        page = list_page(items, key, f"{base}/{resource}", Params([("PageSize", "1")]))
        checks.append(("GET", f"{base}/{resource}", 200, page))
    for method, path, status, body in checks:
        assert spec.check_response(method, path, status, body) == [], (method, path)


def test_the_response_check_catches_broken_shapes() -> None:
    body = (
        SandboxState().create_message(to="+15555550100", from_="+15005550006", body="x").to_json()
    )
    body.pop("num_segments")
    body["num_media"] = 0
    body["sid"] = "XX" + "0" * 32
    body["date_created"] = "2026-11-23T18:00:00Z"
    body["status"] = "lost"
    body["colour"] = "blue"
    found = problems(load_spec().check_response("POST", MESSAGES, 201, body))
    assert sorted(found) == sorted(
        [
            "body.colour is not in the schema",
            "body.num_segments is missing",
            "body.num_media is int, not string",
            f"body.sid='XX{'0' * 32}' does not match ^(SM|MM)[0-9a-fA-F]{{32}}$",
            "body.date_created='2026-11-23T18:00:00Z' is not an RFC 2822 timestamp",
            "body.status='lost' is not one of " + ", ".join(load_spec().resolve(
                {"$ref": "#/components/schemas/message_enum_status"})["enum"]),
        ]
    )  # fmt: skip


def test_undeclared_status_and_error_bodies() -> None:
    spec = load_spec()
    assert problems(spec.check_response("POST", MESSAGES, 200, {})) == [
        "status 200 is not one of the declared 201"
    ]
    good = {
        "code": 21604,
        "message": "x",
        "more_info": "https://www.twilio.com/docs/errors/21604",
        "status": 400,
    }
    assert spec.check_response("POST", MESSAGES, 400, good) == []
    assert problems(spec.check_response("POST", MESSAGES, 400, {"error": "x"})) == [
        "error body field code is missing",
        "error body field message is missing",
        "error body field more_info is missing",
        "error body field status is missing",
    ]


# --- the sandbox runs the checks on every request ----------------------------------------------


def test_the_sandbox_records_violations_of_requests_it_accepts(sandbox: SandboxServer) -> None:
    url = f"{sandbox.url}{ACCOUNT}/Messages.json"
    data = {"To": "+15555550100", "From": "+15005550006", "Body": "x", "Colour": "blue"}
    response = requests.post(url, data=data, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert response.status_code == 201  # Twilio ignores unknown parameters; the checker does not
    assert problems(sandbox.take_violations()) == ["unknown parameter Colour"]


# --- the vendored description -------------------------------------------------------------------


def test_the_vendored_description_is_what_the_trim_script_makes() -> None:
    source = ROOT.parent / "shared" / "twilio-oai" / "twilio_api_v2010.json"
    if not source.exists():
        pytest.skip("the full description (../shared/twilio-oai) is not next to this checkout")
    spec = importlib.util.spec_from_file_location(
        "trim_openapi", ROOT / "scripts" / "trim_openapi.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    trimmed = module.trim(json.loads(source.read_text(encoding="utf-8")))
    assert trimmed == json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    assert (SPEC_PATH.parent / "LICENSE").read_text().startswith("MIT License")
