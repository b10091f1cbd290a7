"""signature.parse_urlencoded: the same fields as Bottle's form parser re-decoded as UTF-8 (and
as urllib's parse_qsl); twiml_response: the same bytes as the library's to_xml()."""

from __future__ import annotations

import io
from urllib.parse import parse_qsl

import pytest
from bottle import BaseRequest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.twiml.messaging_response import MessagingResponse

from dialtone.web.handlers import twiml_response
from dialtone.web.signature import parse_urlencoded

BODIES = [
    b"Body=h%C3%A9llo+%F0%9F%91%8B&From=%2B15551234567",
    b"MediaUrl0=a&MediaUrl0=b&Empty=&NoEquals&&Body=caf\xc3\xa9",
    b"a+b=c%2Bd%26e&%3D=%3D",
    b"",
]


def bottle_fields(body: bytes) -> list[tuple[str, str]]:
    """What the plugin read before: Bottle's request.forms, latin-1 undone."""
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    forms = BaseRequest(environ).forms
    return [(_utf8(key), _utf8(value)) for key, value in forms.allitems()]


def _utf8(text: str) -> str:
    # Bottle decodes a urlencoded body as latin-1; undo that and decode it as UTF-8, strictly.
    return text.encode("latin-1").decode("utf-8")


@pytest.mark.parametrize("body", BODIES)
def test_same_fields_as_bottle(body: bytes) -> None:
    assert list(parse_urlencoded(body).allitems()) == bottle_fields(body)


@pytest.mark.parametrize("body", [b"Body=%C3%28", b"Body=\xff", b"B%FFody=x"])
def test_bad_utf8_raises(body: bytes) -> None:
    with pytest.raises(UnicodeDecodeError):
        parse_urlencoded(body)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200) | st.text(alphabet="ab=&+%2BC3A9é\x00 ", max_size=60).map(str.encode)
)
def test_same_fields_as_parse_qsl(body: bytes) -> None:
    # The hand-written parser against the standard library's, on any bytes at all.
    try:
        expected = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            parse_urlencoded(body)
        return
    # A FormsDict keeps each name's values in order, grouped by name (as Bottle's does), so
    # compare the values per name.
    grouped: dict[str, list[str]] = {}
    for key, value in expected:
        grouped.setdefault(key, []).append(value)
    form = parse_urlencoded(body)
    assert {key: form.getall(key) for key in form} == grouped


@pytest.mark.parametrize(
    "text", ["Thanks, got it.", "Grüße 👋 <&> \"'", "lone \ud800 surrogate", ""]
)
def test_twiml_response_is_the_librarys_xml(text: str) -> None:
    reply = MessagingResponse()
    reply.message(text)
    assert twiml_response(reply) == reply.to_xml().encode("utf-8", "xmlcharrefreplace")
