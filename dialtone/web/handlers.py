"""Mount the routes `dialtone.web.routing` found: each kind of route gets its one wrapper.

A webhook: signature header present (else 403 before the body is read), the form read as UTF-8,
the signature checked, the handler called with what it names, its TwiML answered; an exception
is logged with its traceback and answered with the route's `on_error` TwiML or an empty
<Response/>, so Twilio never sees a 500 or a traceback.

An API route: the bearer token and rate limits (`ApiGuard`), the handler called, its dict
answered as JSON; an exception is logged and answered with a plain JSON 500.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any

from bottle import Bottle, HTTPResponse, response
from twilio.twiml import TwiML

from dialtone.web import accesslog
from dialtone.web.api_auth import ApiGuard
from dialtone.web.jsonapi import json_answer, json_error, read_json
from dialtone.web.routing import Injector, RouteError, RouteSpec
from dialtone.web.signature import SignatureChecker, read_form

log = logging.getLogger("dialtone.routes")

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
EMPTY_RESPONSE = XML_DECLARATION + "<Response />"


class NotTwiml(ValueError):
    """A webhook handler returned something that is not TwiML."""


def mount(
    app: Bottle,
    specs: Iterable[RouteSpec],
    injector: Injector,
    checker: SignatureChecker,
    guard: ApiGuard,
) -> None:
    """Add every route to `app`; RouteError if a handler asks for something nobody provides."""
    for spec in specs:
        if spec.kind == "webhook":
            callback = webhook_callback(spec, injector, checker)
        else:
            callback = api_callback(spec, injector, guard)
        try:
            app.route(spec.path, spec.method, callback, name=spec.handler.__name__)
        except Exception as exc:  # Bottle's RouteSyntaxError and friends
            raise RouteError(
                f"The route {spec.path!r} ({spec.source}) is not valid: {exc}"
            ) from None


def webhook_callback(
    spec: RouteSpec, injector: Injector, checker: SignatureChecker
) -> Callable[..., Any]:
    """The Bottle callback for a `@webhook` handler."""
    arguments = injector.plan(spec, spec.handler, {"form": read_form})
    on_error = spec.on_error
    error_arguments = injector.plan(spec, on_error, {"form": read_form}) if on_error else None
    route = spec.path

    def answer_error() -> bytes:
        if on_error is None or error_arguments is None:
            return _twiml_text(EMPTY_RESPONSE)
        try:
            return twiml_answer(on_error(**error_arguments()))
        except Exception:
            log.exception("the error reply of %s failed too; answering <Response/>", route)
            return _twiml_text(EMPTY_RESPONSE)

    def callback(**wildcards: Any) -> bytes:
        checker.precheck(route)
        form = read_form()
        accesslog.note_webhook(form)
        checker.check(route, form)
        try:
            return twiml_answer(spec.handler(**arguments(), **wildcards))
        except HTTPResponse:
            raise
        except Exception:
            log.exception("POST %s (%s) failed; answering with the error reply", route, spec.source)
            return answer_error()

    return callback


def api_callback(spec: RouteSpec, injector: Injector, guard: ApiGuard) -> Callable[..., Any]:
    """The Bottle callback for an `@api` handler."""
    extra = {"payload": read_json} if spec.method != "GET" else {}
    arguments = injector.plan(spec, spec.handler, extra)

    def callback(**wildcards: Any) -> HTTPResponse:
        guard.authorize()
        try:
            result = spec.handler(**arguments(), **wildcards)
        except HTTPResponse:
            raise
        except Exception:
            log.exception("%s %s (%s) failed", spec.method, spec.path, spec.source)
            raise json_error(500, "Something went wrong on the server; see its log.") from None
        if isinstance(result, HTTPResponse):
            return result
        return json_answer(result if result is not None else {}, spec.status)

    return callback


def twiml_answer(result: object) -> bytes:
    """The body for what a webhook handler returned: TwiML object, TwiML text, or None (204)."""
    if result is None or isinstance(result, TwiML):
        return twiml_response(result)
    if isinstance(result, str | bytes):
        text = result.decode("utf-8") if isinstance(result, bytes) else result
        try:
            root = ET.fromstring(text)  # noqa: S314 (our own handler's answer, not input)
        except ET.ParseError as exc:
            raise NotTwiml(f"the handler returned text that is not XML: {exc}") from None
        if root.tag != "Response":
            raise NotTwiml(f"TwiML starts with <Response>, not <{root.tag}>")
        return _twiml_text(text)
    raise NotTwiml(
        f"a webhook returns a TwiML response (VoiceResponse, MessagingResponse), TwiML text or "
        f"None, not {type(result).__name__}"
    )


def _twiml_text(text: str) -> bytes:
    response.content_type = "text/xml; charset=utf-8"
    return text.encode("utf-8")


def twiml_response(result: TwiML | None) -> bytes:
    """A TwiML object as a text/xml body (UTF-8); None as an empty 204.

    The bytes of `result.to_xml()`: the library builds the element tree, and serialising it
    to text and encoding that once skips ElementTree's byte-stream writer (its TextIOWrapper
    and BytesIO). Text that cannot be UTF-8 (a lone surrogate) goes through to_xml() itself,
    which writes it as a character reference.
    """
    if result is None:
        response.status = 204
        return b""
    try:
        return _twiml_text(XML_DECLARATION + ET.tostring(result.xml(), encoding="unicode"))
    except UnicodeEncodeError:
        return _twiml_text(str(result.to_xml()))
