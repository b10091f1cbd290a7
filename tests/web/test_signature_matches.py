"""signature_matches gives RequestValidator.validate()'s answer, computing less."""

from __future__ import annotations

import pytest
from bottle import FormsDict
from twilio.request_validator import RequestValidator

from dialtone.web.signature import signature_matches

TOKEN = "12345"
FORM = {"MessageSid": "SM" + "1" * 32, "Body": "héllo"}


def forms_dict() -> FormsDict:
    form = FormsDict()
    for key, value in FORM.items():
        form.append(key, value)
    return form


URLS = [
    "https://bot.example.com/sms_url",
    "https://bot.example.com:443/sms_url",
    "https://bot.example.com:8443/sms_url?x=1",
    "http://127.0.0.1:5000/status",
    "http://bot.example.com/status",
]


@pytest.mark.parametrize("signed_url", URLS)
@pytest.mark.parametrize("checked_url", URLS)
@pytest.mark.parametrize("algorithm", ["HMAC_SHA1", "HMAC_SHA256"])
def test_same_answer_as_validate(signed_url: str, checked_url: str, algorithm: str) -> None:
    validator = RequestValidator(TOKEN)
    signature = validator.compute_signature(signed_url, forms_dict(), algorithm)
    expected = validator.validate(checked_url, forms_dict(), signature, algorithm)
    assert signature_matches(validator, checked_url, forms_dict(), signature, algorithm) == expected


def test_a_port_spelling_difference_is_accepted_like_validate() -> None:
    validator = RequestValidator(TOKEN)
    signature = validator.compute_signature("https://bot.example.com:443/sms_url", forms_dict())
    url = "https://bot.example.com/sms_url"
    assert signature_matches(validator, url, forms_dict(), signature, "HMAC_SHA1")


def test_unknown_algorithm_is_refused() -> None:
    validator = RequestValidator(TOKEN)
    signature = validator.compute_signature(URLS[0], forms_dict())
    assert not signature_matches(validator, URLS[0], forms_dict(), signature, "HMAC_MD5")


def test_a_bad_port_raises_value_error_like_validate() -> None:
    validator = RequestValidator(TOKEN)
    with pytest.raises(ValueError, match=r"(?i)port"):
        validator.validate("http://x:abc/status", forms_dict(), "sig")
    with pytest.raises(ValueError, match=r"(?i)port"):
        signature_matches(validator, "http://x:abc/status", forms_dict(), "sig", "HMAC_SHA1")
