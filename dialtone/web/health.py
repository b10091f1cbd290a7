"""GET /healthz: liveness for load balancers and systemd, with nothing secret in it."""

from __future__ import annotations

from bottle import Bottle

from dialtone import __version__
from dialtone.settings import Settings


def install(app: Bottle, settings: Settings) -> None:
    """Add GET /healthz."""

    @app.get("/healthz")
    def healthz() -> dict[str, object]:
        return {
            "status": "ok",
            "version": __version__,
        }
