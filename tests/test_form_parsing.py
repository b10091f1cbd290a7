"""signature.parse_urlencoded: the same fields as Bottle's form parser re-decoded as UTF-8."""

from __future__ import annotations

import io

import pytest
from bottle import BaseRequest

from dialtone.signature import _utf8, parse_urlencoded

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


@pytest.mark.parametrize("body", BODIES)
def test_same_fields_as_bottle(body: bytes) -> None:
    assert list(parse_urlencoded(body).allitems()) == bottle_fields(body)


@pytest.mark.parametrize("body", [b"Body=%C3%28", b"Body=\xff", b"B%FFody=x"])
def test_bad_utf8_raises(body: bytes) -> None:
    with pytest.raises(UnicodeDecodeError):
        parse_urlencoded(body)
