"""GET /healthz: liveness for load balancers and systemd, with nothing secret in it.

200 while the record takes writes; 503 naming the cause (never the file or the database host)
while it does not, so a load balancer sends Twilio's webhooks to an instance that can record
them. The check itself is the record's (Recorder.health: a real write).
"""

from __future__ import annotations

from bottle import Bottle, HTTPResponse

from dialtone import __version__
from dialtone.record.recorder import Recorder, health_answer


def install(app: Bottle, recorder: Recorder) -> None:
    """Add GET /healthz."""

    @app.get("/healthz")
    def healthz() -> HTTPResponse:
        status, body = health_answer(recorder, __version__)
        return HTTPResponse(body, status, {"Cache-Control": "no-store"})
