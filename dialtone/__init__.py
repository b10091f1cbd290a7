"""Dialtone: Twilio webhooks in a few lines, a one-command dev loop, and a local sandbox.

The public face:

    from dialtone import webhook, api      # mark route functions in routes/
    from dialtone import Settings, create_app

Nothing here runs at import time, and these names are imported only when first used, so that
`import dialtone.facts` (the sandbox does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Settings", "__version__", "api", "create_app", "webhook"]

if TYPE_CHECKING:
    from dialtone.app import create_app
    from dialtone.settings import Settings
    from dialtone.web.routing import api, webhook

_EXPORTS = {
    "webhook": "dialtone.web.routing",
    "api": "dialtone.web.routing",
    "Settings": "dialtone.settings",
    "create_app": "dialtone.app",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dialtone' has no attribute {name!r}")
