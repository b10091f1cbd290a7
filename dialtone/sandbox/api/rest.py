"""The sandbox's Twilio REST API: IncomingPhoneNumbers, Messages and Calls over a SandboxState.

`create_rest_app(state)` returns a Bottle app serving `/2010-04-01/Accounts/{AccountSid}/...` with
HTTP Basic auth (the state's Account SID and auth token). Every request and every response is
checked against Twilio's OpenAPI description; disagreements go to the `ViolationLog` (tests fail
on them) and the logs. Mistakes Twilio rejects are rejected with Twilio's error body and codes
(see rest_errors.py).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from bottle import Bottle, HTTPError, HTTPResponse, request

from dialtone.facts import MAX_BODY_CHARS
from dialtone.phone_numbers import WHATSAPP_PREFIX, is_destination, is_e164
from dialtone.sandbox.api import errors as err
from dialtone.sandbox.api.applications_api import ApplicationsApi
from dialtone.sandbox.api.errors import TwilioError
from dialtone.sandbox.api.openapi import Spec, ViolationLog, load_spec
from dialtone.sandbox.api.paging import Answer, Params, check_method, is_url, list_page
from dialtone.sandbox.resources import API_ROOT, CALL_ENDED
from dialtone.sandbox.state import SandboxState, UnknownSid

log = logging.getLogger("dialtone.sandbox.api.rest")

ACCOUNT = API_ROOT + "/<account_sid>"
MAX_BODY = MAX_BODY_CHARS
# Form parameter -> PhoneNumber field that a number update may change.
NUMBER_PARAMS = {
    "FriendlyName": "friendly_name",
    "VoiceUrl": "voice_url",
    "VoiceMethod": "voice_method",
    "VoiceFallbackUrl": "voice_fallback_url",
    "VoiceFallbackMethod": "voice_fallback_method",
    "VoiceCallerIdLookup": "voice_caller_id_lookup",
    "StatusCallback": "status_callback",
    "StatusCallbackMethod": "status_callback_method",
    "SmsUrl": "sms_url",
    "SmsMethod": "sms_method",
    "SmsFallbackUrl": "sms_fallback_url",
    "SmsFallbackMethod": "sms_fallback_method",
}


def create_rest_app(
    state: SandboxState, *, violations: ViolationLog | None = None, spec: Spec | None = None
) -> Bottle:
    """The REST API over `state`; OpenAPI disagreements are recorded in `violations`."""
    api = _Api(state, violations if violations is not None else ViolationLog(), spec or load_spec())
    app = Bottle()
    route = api.endpoint
    app.route(f"{ACCOUNT}/IncomingPhoneNumbers.json", "GET", route(api.list_numbers))
    app.route(f"{ACCOUNT}/IncomingPhoneNumbers/<sid>.json", "GET", route(api.fetch_number))
    app.route(f"{ACCOUNT}/IncomingPhoneNumbers/<sid>.json", "POST", route(api.update_number))
    app.route(f"{ACCOUNT}/Messages.json", "GET", route(api.list_messages))
    app.route(f"{ACCOUNT}/Messages.json", "POST", route(api.create_message))
    app.route(f"{ACCOUNT}/Messages/<sid>.json", "GET", route(api.fetch_message))
    app.route(f"{ACCOUNT}/Calls.json", "GET", route(api.list_calls))
    app.route(f"{ACCOUNT}/Calls.json", "POST", route(api.create_call))
    app.route(f"{ACCOUNT}/Calls/<sid>.json", "GET", route(api.fetch_call))
    app.route(f"{ACCOUNT}/Calls/<sid>.json", "POST", route(api.update_call))
    apps = ApplicationsApi(state)
    app.route(f"{ACCOUNT}/Applications.json", "GET", route(apps.list))
    app.route(f"{ACCOUNT}/Applications.json", "POST", route(apps.create))
    app.route(f"{ACCOUNT}/Applications/<sid>.json", "GET", route(apps.fetch))
    app.route(f"{ACCOUNT}/Applications/<sid>.json", "POST", route(apps.update))
    app.route(f"{ACCOUNT}/Applications/<sid>.json", "DELETE", route(apps.delete))
    app.route("/<path:path>", ["GET", "POST", "PUT", "DELETE", "PATCH"], route(api.unknown))
    app.default_error_handler = _error_page
    app.config["dialtone.sandbox.violations"] = api.violations
    return app


class _Api:
    """The handlers, and the wrapper that gives each one auth, checks and JSON."""

    def __init__(self, state: SandboxState, violations: ViolationLog, spec: Spec) -> None:
        self.state = state
        self.violations = violations
        self.spec = spec

    def endpoint(self, handler: Callable[..., Answer]) -> Callable[..., HTTPResponse]:
        """Wrap a handler(params, **url_args) -> (status, body) with auth, checks and JSON."""

        def serve(**url_args: str) -> HTTPResponse:
            method, path = request.method, request.path
            query = list(request.query.decode().allitems())
            form = list(request.forms.decode().allitems()) if method == "POST" else []
            known = self.spec.find(method, path) is not None
            if known:
                self.violations.add(self.spec.check_request(method, path, query=query, form=form))
            params = Params(form if method == "POST" else query)
            try:
                self._authenticate(url_args.pop("account_sid", None))
                status, body = handler(params, **url_args)
            except TwilioError as exc:
                status, body = exc.status, exc.body()
            except UnknownSid:
                status, body = err.not_found(path).status, err.not_found(path).body()
            if known:
                self.violations.add(self.spec.check_response(method, path, status, body))
            log.debug("sandbox %s %s -> %s", method, path, status)
            return _json(status, body)

        return serve

    def _authenticate(self, account_sid: str | None) -> None:
        auth = request.auth
        if auth is None or account_sid not in (None, self.state.account_sid):
            raise err.authenticate()
        user, password = auth
        good_user = hmac.compare_digest(user.encode(), self.state.account_sid.encode())
        good_token = hmac.compare_digest((password or "").encode(), self.state.auth_token.encode())
        if not (good_user and good_token):
            raise err.authenticate()

    # --- IncomingPhoneNumbers ---------------------------------------------------------------

    def list_numbers(self, params: Params) -> Answer:
        numbers = self.state.numbers()
        wanted = params.get("PhoneNumber")
        if wanted:
            numbers = [n for n in numbers if _number_matches(wanted, n.phone_number)]
        name = params.get("FriendlyName")
        if name:
            numbers = [n for n in numbers if n.friendly_name == name]
        items = [n.to_json() for n in numbers]
        return 200, list_page(items, "incoming_phone_numbers", request.path, params)

    def fetch_number(self, params: Params, sid: str) -> Answer:
        return 200, self.state.number(sid).to_json()

    def update_number(self, params: Params, sid: str) -> Answer:
        self.state.number(sid)  # 404 before any validation, as Twilio does
        changes: dict[str, Any] = {}
        for name, field in NUMBER_PARAMS.items():
            value = params.get(name)
            if value is None:
                continue
            if name.endswith("Url") or name == "StatusCallback":
                if value and not is_url(value):
                    raise err.bad_request(err.NUMBER_URL_INVALID, f"{name} is not valid: {value}")
            elif name.endswith("Method"):
                value = check_method(name, value)
            elif name == "VoiceCallerIdLookup":
                changes[field] = value.lower() == "true"
                continue
            changes[field] = value
        return 200, self.state.update_number(sid, **changes).to_json()

    # --- Messages ---------------------------------------------------------------------------

    def list_messages(self, params: Params) -> Answer:
        messages = self.state.messages()
        for param, attr in (("To", "to"), ("From", "from_")):
            value = params.get(param)
            if value:
                messages = [m for m in messages if getattr(m, attr) == value]
        return 200, list_page([m.to_json() for m in messages], "messages", request.path, params)

    def fetch_message(self, params: Params, sid: str) -> Answer:
        return 200, self.state.message(sid).to_json()

    def create_message(self, params: Params) -> Answer:
        to = params.get("To")
        if not to:
            raise err.bad_request(err.TO_REQUIRED, "A 'To' phone number is required.")
        if not is_destination(to):
            raise err.bad_request(
                err.INVALID_TO, f"The 'To' number {to} is not a valid phone number."
            )
        service = params.get("MessagingServiceSid") or None
        from_ = self._message_sender(params.get("From"), service)
        body = params.get("Body") or ""
        media = [url for url in params.getall("MediaUrl") if url]
        if not body and not media and not params.get("ContentSid"):
            # A ContentSid alone is a whole message: its Content Template is the body.
            raise err.bad_request(err.BODY_REQUIRED, "Message body is required.")
        if len(body) > MAX_BODY:
            raise err.bad_request(
                err.BODY_TOO_LONG, "The concatenated message body exceeds the 1600 character limit."
            )
        callback = params.get("StatusCallback") or None
        if callback and not is_url(callback):
            raise err.bad_request(
                err.INVALID_STATUS_CALLBACK,
                f"The StatusCallback URL {callback} is not a valid URL.",
            )
        refused = err.magic_to(to)
        if refused is not None:
            raise refused
        # Twilio's STOP filtering: refused until the recipient texts START. A Messaging Service's
        # opt-outs cover every number in its pool (Twilio's opt-out keywords support article).
        opted_out = (
            self.state.optouts.is_opted_out_of_pool(to)
            if service
            else self.state.optouts.is_opted_out(from_, to)
        )
        if not to.startswith(WHATSAPP_PREFIX) and opted_out:
            raise err.bad_request(
                err.UNSUBSCRIBED,
                f"Attempt to send to unsubscribed recipient: {to} has replied STOP to "
                f"{from_ or service}.",
            )
        message = self.state.create_message(
            to=to,
            from_=from_,
            body=body,
            media_urls=media,
            status="accepted" if service else "queued",  # Twilio's initial statuses
            status_callback=callback,
            messaging_service_sid=service,
        )
        return 201, message.to_json()

    def _message_sender(self, from_: str | None, service_sid: str | None) -> str:
        """The given From if it is ours; "" when a Messaging Service will assign one."""
        if from_:
            bare = from_.removeprefix(WHATSAPP_PREFIX)
            if self.state.number_by_phone(bare) is None:
                raise err.bad_request(
                    err.FROM_NOT_OURS,
                    f"The From phone number {from_} is not a valid, SMS-capable inbound phone "
                    "number or short code for your account.",
                )
            return from_
        if not service_sid or not self.state.phone_number:
            raise err.bad_request(err.FROM_REQUIRED, "A 'From' phone number is required.")
        return ""  # the service picks a sender from its pool (the sandbox number) at `queued`

    # --- Calls ------------------------------------------------------------------------------

    def list_calls(self, params: Params) -> Answer:
        calls = self.state.calls()
        for param, attr in (("To", "to"), ("From", "from_"), ("Status", "status")):
            value = params.get(param)
            if value:
                calls = [c for c in calls if getattr(c, attr) == value]
        parent = params.get("ParentCallSid")
        if parent:
            calls = [c for c in calls if c.parent_call_sid == parent]
        return 200, list_page([c.to_json() for c in calls], "calls", request.path, params)

    def fetch_call(self, params: Params, sid: str) -> Answer:
        return 200, self.state.call(sid).to_json()

    def create_call(self, params: Params) -> Answer:
        to, from_ = params.get("To"), params.get("From")
        if not to:
            raise err.bad_request(err.CALL_TO_REQUIRED, "A 'To' phone number is required.")
        if not from_:
            raise err.bad_request(err.CALL_FROM_REQUIRED, "A 'From' phone number is required.")
        if not (is_e164(to) or to.startswith(("client:", "sip:"))):
            raise err.bad_request(
                err.INVALID_TO, f"The 'To' number {to} is not a valid phone number."
            )
        if self.state.number_by_phone(from_) is None:
            raise err.bad_request(
                err.CALL_FROM_NOT_VERIFIED,
                f"The source phone number provided, {from_}, is not yet verified for your account.",
            )
        url, twiml = params.get("Url") or None, params.get("Twiml") or None
        method = check_method("Method", params.get("Method") or "POST")
        fallback = params.get("FallbackUrl") or None
        callback = params.get("StatusCallback") or None
        application_sid = params.get("ApplicationSid")
        if application_sid:  # the application's voice settings replace Url and friends
            application = self.state.applications.get(application_sid)
            if application is None or not application.voice_url:
                raise err.bad_request(err.CALL_APPLICATION_INVALID, "ApplicationSid is invalid.")
            url, twiml, method = application.voice_url, None, application.voice_method
            fallback = application.voice_fallback_url
            callback = callback or application.status_callback
        self._check_call_instructions(url, twiml)
        if callback and not is_url(callback):
            raise err.bad_request(
                err.CALL_URL_INVALID, f"StatusCallback is not a valid URL: {callback}"
            )
        extra = {k: v for k, v in params.pairs if k not in _CALL_CREATE_FIELDS}
        call = self.state.create_call(
            to=to,
            from_=from_,
            url=url,
            twiml=twiml,
            method=method,
            fallback_url=fallback,
            fallback_method=check_method("FallbackMethod", params.get("FallbackMethod") or "POST"),
            status_callback=callback,
            status_callback_method=check_method(
                "StatusCallbackMethod", params.get("StatusCallbackMethod") or "POST"
            ),
            status_callback_events=tuple(params.getall("StatusCallbackEvent")),
            extra=extra,
        )
        return 201, call.to_json()

    def update_call(self, params: Params, sid: str) -> Answer:
        call = self.state.call(sid)
        status = params.get("Status")
        url, twiml = params.get("Url") or None, params.get("Twiml") or None
        if status:
            if status not in ("canceled", "completed"):
                raise err.bad_request(err.BAD_REQUEST, "Status must be canceled or completed.")
            return 200, self._end_call(sid, status).to_json()
        if url or twiml:
            if call.status in CALL_ENDED:
                raise err.bad_request(
                    err.CALL_NOT_IN_PROGRESS, "Call is not in-progress. Cannot redirect."
                )
            self._check_call_instructions(url, twiml)
            method = check_method("Method", params.get("Method") or "POST")
            return 200, self.state.redirect_call(sid, url=url, twiml=twiml, method=method).to_json()
        return 200, call.to_json()

    def _end_call(self, sid: str, status: str) -> Any:
        """Status=canceled ends a call that has not been answered; completed ends any call."""
        call = self.state.call(sid)
        if call.status in ("queued", "ringing"):
            return self.state.set_call_status(sid, "canceled")
        if call.status == "in-progress" and status == "completed":
            return self.state.set_call_status(sid, "completed")
        return call  # canceled has no effect on an answered call; an ended call stays ended

    @staticmethod
    def _check_call_instructions(url: str | None, twiml: str | None) -> None:
        if not url and not twiml:
            raise err.bad_request(
                err.CALL_URL_INVALID,
                "Url parameter is required. For more information, see http://www.twilio.com/docs/api/twiml",
            )
        if url and not is_url(url):
            raise err.bad_request(err.CALL_URL_INVALID, f"Url is not a valid URL: {url}")

    # --- anything else ----------------------------------------------------------------------

    def unknown(self, params: Params, path: str) -> Answer:
        self.violations.add(self.spec.check_request(request.method, request.path))
        raise err.not_found(request.path)


_CALL_CREATE_FIELDS = frozenset(
    [
        "To",
        "From",
        "Url",
        "Twiml",
        "Method",
        "FallbackUrl",
        "FallbackMethod",
        "StatusCallback",
        "StatusCallbackMethod",
        "StatusCallbackEvent",
        "ApplicationSid",
    ]
)


def _number_matches(pattern: str, number: str) -> bool:
    """Twilio's PhoneNumber filter: a partial number, '*' standing for any one digit."""
    pattern = pattern.strip()
    width = len(pattern)
    for i in range(len(number) - width + 1):
        window = number[i : i + width]
        if all(p == c or (p == "*" and c.isdigit()) for p, c in zip(pattern, window, strict=True)):
            return True
    return False


def _json(status: int, body: dict[str, Any]) -> HTTPResponse:
    if status == 204:
        return HTTPResponse("", 204)
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    return HTTPResponse(json.dumps(body), status=status, headers=headers)


def _error_page(error: HTTPError) -> str:
    """Bottle's own errors (405, 500) as Twilio's JSON error body, never an HTML page."""
    if error.status_code >= 500:
        log.error("sandbox error on %s %s", request.method, request.path, exc_info=error.exception)
    message = error.status_line.split(" ", 1)[-1]
    error.content_type = "application/json; charset=utf-8"
    return json.dumps(TwilioError(error.status_code, error.status_code, message).body())
