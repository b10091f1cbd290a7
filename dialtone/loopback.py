"""Whether a host name or address is this machine: the one check the app's start-up warnings,
the Twilio client (the sandbox or a mock on this machine) and the loopback guards share."""

from __future__ import annotations

from ipaddress import ip_address

LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def is_loopback_name(name: str) -> bool:
    """True for localhost, 127.0.0.0/8 or ::1 (a bare name or address: no port, no brackets)."""
    name = name.strip().lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ip_address(name).is_loopback
    except ValueError:
        return False
