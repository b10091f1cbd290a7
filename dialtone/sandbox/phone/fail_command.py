"""The terminal phone's `/fail` command: plan a failure for the next text(s) or call(s).

/fail text 30003                 the next text to this phone ends undelivered with 30003
/fail text 30001 failed x2       the next two end failed with 30001
/fail call busy                  the next call to this phone ends busy
/fail call no-answer +15551234567   ... to another number (a call or <Dial> the app makes)
"""

from __future__ import annotations

from dialtone.sandbox.phone.client import PhoneClient

USAGE = (
    "Usage: /fail text CODE [undelivered|failed] [xN] [+number]  or  "
    "/fail call busy|no-answer|failed [xN] [+number]"
)


class FailCommandError(ValueError):
    """The /fail line could not be understood; the message is the usage."""


def run_fail_command(client: PhoneClient, rest: str) -> str:
    """Carry out `/fail <rest>` through the phone API; what to tell the person."""
    kind, *words = rest.split() or [""]
    count, to, left = 1, None, []
    for word in words:
        if word.lower().startswith("x") and word[1:].isdigit():
            count = int(word[1:])
        elif word.startswith("+") and word[1:].isdigit():
            to = word
        else:
            left.append(word.lower())
    times = "the next text" if count == 1 else f"the next {count} texts"
    target = to or "this phone"
    if kind in ("text", "message", "sms") and left and left[0].isdigit() and len(left) <= 2:
        status = left[1] if len(left) == 2 else None
        planned = client.fail_messages(int(left[0]), status=status, to=to, count=count)
        return f"{times} to {target} will end {planned['status']} with {planned['error_code']}"
    if kind == "call" and len(left) == 1:
        planned = client.fail_calls(left[0], to=to, count=count)
        times = "the next call" if count == 1 else f"the next {count} calls"
        return f"{times} to {target} will end {planned['status']}"
    raise FailCommandError(USAGE)
