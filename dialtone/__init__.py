"""Dialtone's building blocks: settings, signature checking, the Twilio client and friends.

Nothing here runs at import time; entry points (server.py, scripts/) put the pieces together.
"""

__version__ = "0.1.0"
