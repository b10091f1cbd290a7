"""Issue 10, voice: the sandbox carries out calls as Twilio documents, driven as an app would
(the twilio library with TWILIO_API_URL, a webhook app on loopback, the phone API). Each test
names the Twilio page it follows; docs/sandbox-fidelity.md lists them all."""

from __future__ import annotations

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from dialtone.sandbox.carrier.voice_queue import DEFAULT_HOLD_MUSIC
from tests.sandbox.conftest import Rig, errors, kinds, said, say

ANNOUNCEMENT = "We are sorry, an application error has occurred. Goodbye."


def waiting_gather(prompt: str) -> VoiceResponse:
    response = VoiceResponse()
    gather = Gather(action="/menu", num_digits=1, timeout=30)  # 30 s: only a redirect ends it
    gather.say(prompt)
    response.append(gather)
    return response


def test_message_in_voice_twiml_sends_nothing_and_warns_12200(rig: Rig) -> None:
    # <Message> is a messaging verb (TwiML <Message> page), not in the voice schema: Twilio logs
    # 12200 "Schema validation warning" and sends no text; the sandbox carries on with the call.
    rig.app.route(
        "/voice", "<Response><Say>Before</Say><Message>Hi</Message><Say>After</Say></Response>"
    )
    rig.phone.call()
    events = rig.until_call_ends()
    assert errors(events) == [(12200, False)]
    assert said(events) == ["Before", "After"]
    assert events[-1]["status"] == "completed"
    assert [m.direction for m in rig.sandbox.state.messages()] == []


def test_sms_in_voice_twiml_is_still_sent_with_a_deprecation_warning(rig: Rig) -> None:
    # TwiML <Sms> (voice) is deprecated but still carried out by Twilio.
    rig.app.route("/voice", "<Response><Sms>Your link</Sms></Response>")
    rig.phone.call()
    events = rig.until_call_ends()
    ((code, fatal),) = errors(events)
    assert (code, fatal) == (None, False)
    assert "deprecated" in kinds(events, "error")[0]["message"]
    text = rig.phone.wait_for(lambda e: e["type"] == "message")
    assert (text["body"], text["direction"]) == ("Your link", "outbound-call")


def test_calls_create_with_url_and_twiml_runs_the_url(rig: Rig) -> None:
    # Twilio's API description (Calls, Twiml): "If both twiml and url are provided then twiml
    # parameter will be ignored."
    rig.app.route("/voice", say("From the URL"))
    call = rig.client.calls.create(
        to=rig.phone_number,
        from_=rig.number,
        url=rig.app.url("/voice"),
        twiml="<Response><Say>From the Twiml</Say></Response>",
    )
    rig.phone.wait_for(lambda e: e["type"] == "ringing")
    rig.phone.answer(call.sid)
    assert said(rig.until_call_ends()) == ["From the URL"]


@pytest.mark.parametrize("how", ["url", "twiml"])
def test_a_live_call_updated_with_url_or_twiml_moves_to_it(rig: Rig, how: str) -> None:
    # Calls resource, "Update a Call in progress": Url or Twiml moves the live call to new TwiML.
    rig.app.route("/voice", waiting_gather("Press a key"))
    rig.app.route("/moved", say("Moved by URL"))
    sid = rig.phone.call()
    rig.phone.wait_for(lambda e: e["type"] == "gather")
    if how == "url":
        rig.client.calls(sid).update(url=rig.app.url("/moved"))
    else:
        rig.client.calls(sid).update(twiml="<Response><Say>Moved by Twiml</Say></Response>")
    events = rig.until_call_ends()
    assert said(events) == [f"Moved by {how.upper() if how == 'url' else 'Twiml'}"]
    assert events[-1]["status"] == "completed"
    assert rig.app.requests_to("/menu") == []  # the Gather never finished


def test_a_queued_caller_moved_by_an_update_leaves_the_queue(rig: Rig) -> None:
    rig.app.route("/voice", "<Response><Enqueue>support</Enqueue></Response>")
    rig.app.route("/moved", say("Out of the queue"))
    sid = rig.phone.call()
    played = rig.phone.wait_for(lambda e: e["type"] == "play")
    # <Enqueue> page: without waitUrl, the caller hears Twilio's default classical playlist.
    assert played["url"] == DEFAULT_HOLD_MUSIC
    rig.client.calls(sid).update(url=rig.app.url("/moved"))
    assert said(rig.until_call_ends()) == ["Out of the queue"]
    assert rig.sandbox.carrier is not None
    assert rig.sandbox.carrier.queues.size("support") == 0


def test_an_inbound_call_whose_first_webhook_fails_is_answered_to_announce_it(rig: Rig) -> None:
    # Error 11200 page: the caller hears Twilio's application-error announcement.
    rig.app.route("/voice", "boom", status=500, content_type="text/plain")
    rig.phone.call()
    events = rig.until_call_ends()
    statuses = [e["status"] for e in kinds(events, "call_status")]
    assert errors(events) == [(11200, True)]
    assert said(events) == [ANNOUNCEMENT]
    assert statuses[-2:] == ["in-progress", "completed"]


def test_a_polling_hold_loop_runs_past_the_old_ten_document_guard(rig: Rig) -> None:
    # Twilio documents no limit on <Redirect>s without caller input; the sandbox's own guard is
    # 1000 documents (MAX_DOCUMENTS_WITHOUT_INPUT).
    hold = VoiceResponse()
    hold.say("Please hold")
    hold.pause(length=1)
    hold.redirect("/voice")
    rig.app.route("/voice", hold)
    sid = rig.phone.call()
    assert len(rig.requests("/voice", 25)) >= 25
    rig.client.calls(sid).update(status="completed")
    events = rig.until_call_ends()
    assert errors(events) == []
    assert rig.client.calls(sid).fetch().status == "completed"


def test_an_application_sid_call_runs_the_applications_voice_url(rig: Rig) -> None:
    # Calls resource: ApplicationSid "will handle the call"; Applications resource: VoiceUrl.
    rig.app.route("/ivr", say("From the application"))
    application = rig.client.applications.create(friendly_name="IVR", voice_url=rig.app.url("/ivr"))
    assert application.sid.startswith("AP")
    assert [a.sid for a in rig.client.applications.list()] == [application.sid]
    call = rig.client.calls.create(
        to=rig.phone_number, from_=rig.number, application_sid=application.sid
    )
    rig.phone.wait_for(lambda e: e["type"] == "ringing")
    rig.phone.answer(call.sid)
    assert said(rig.until_call_ends()) == ["From the application"]
    assert rig.app.requests_to("/ivr")[0].params["CallSid"] == call.sid
    assert rig.client.applications(application.sid).delete() is True
    with pytest.raises(TwilioRestException) as refused:
        rig.client.calls.create(
            to=rig.phone_number, from_=rig.number, application_sid=application.sid
        )
    assert refused.value.code == 21218


def test_play_digits_sends_tones_without_a_url_warning(rig: Rig) -> None:
    # <Play> page: digits plays DTMF tones; no URL is needed.
    rig.app.route("/voice", '<Response><Play digits="1234w#"/></Response>')
    rig.phone.call()
    events = rig.until_call_ends()
    assert errors(events) == []
    assert [e["url"] for e in kinds(events, "play")] == ["dtmf:1234w#"]


def test_loop_zero_repeats_until_the_call_ends(rig: Rig) -> None:
    # <Play>/<Say> pages: loop="0" repeats until the call is hung up (or 1000 times).
    rig.app.route("/voice", '<Response><Say loop="0">Still here</Say></Response>')
    rig.phone.call()
    for _ in range(3):
        rig.phone.wait_for(lambda e: e["type"] == "say")
    rig.phone.hangup()
    events = rig.until_call_ends()
    assert events[-1]["status"] == "completed"
    assert len(said(events)) < 1000


def test_every_dial_noun_rings_and_the_one_that_answers_is_connected(rig: Rig) -> None:
    # <Dial> page: several <Number>s ring at once; the first to answer is connected, and the
    # action gets DialCallStatus and DialCallDuration.
    response = VoiceResponse()
    dial = Dial(action="/dialled")
    dial.number("+15551110001")
    dial.number("+15551110002")
    response.append(dial)
    rig.app.route("/voice", response)
    rig.app.route("/dialled", say("Done"))
    rig.phone.fail_calls("busy", to="+15551110001")
    rig.phone.call()
    events = rig.until_call_ends()
    assert [(e["target"], e["status"]) for e in kinds(events, "dial")] == [
        ("+15551110001", "busy"),
        ("+15551110002", "answered"),
    ]
    (dialled,) = rig.app.requests_to("/dialled")
    assert dialled.params["DialCallStatus"] == "completed"
    assert int(dialled.params["DialCallDuration"]) > 0


def test_an_invalid_action_on_empty_result_is_13338(rig: Rig) -> None:
    # Error 13338 "Gather: Invalid actionOnEmptyResult value" (not the generic 12200).
    rig.app.route(
        "/voice", '<Response><Gather actionOnEmptyResult="maybe" timeout="1"/></Response>'
    )
    rig.phone.call()
    events = rig.phone.collect(lambda e: e["type"] == "gather")
    rig.phone.hangup()
    assert errors(events + rig.until_call_ends()) == [(13338, False)]


def test_connection_overrides_are_applied_and_never_signed(rig: Rig) -> None:
    # "Webhook connection overrides" page: #rc=2&rp=5xx retries a 5xx; the fragment is not sent.
    def first_fails(params: dict[str, str]) -> str:
        rig.app.route("/flaky", say("Second try"))  # the next request gets this
        return "boom"

    rig.app.route("/flaky", first_fails, status=500, content_type="text/plain")
    rig.point(voice_url="/flaky#ct=1000&rc=2&rp=5xx")
    rig.phone.call()
    events = rig.until_call_ends()
    assert said(events) == ["Second try"]
    assert errors(events) == []
    tries = rig.app.requests_to("/flaky")
    assert len(tries) == 2
    assert all(r.signature_ok for r in tries)  # signed over the URL without the fragment


def test_voice_webhooks_are_signed_against_the_url_without_overrides(rig: Rig) -> None:
    rig.app.route("/voice", say("Hello"))
    rig.point(voice_url="/voice#tt=5000")
    rig.phone.call()
    assert said(rig.until_call_ends()) == ["Hello"]
    assert rig.app.requests_to("/voice")[0].signature_ok
