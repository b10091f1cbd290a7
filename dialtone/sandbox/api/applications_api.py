"""The sandbox's `Applications` REST resource: create, list, fetch, update and delete.

Served by `rest.py` under the same auth and OpenAPI checks as the other resources; a call made
with `ApplicationSid` runs the application's VoiceUrl (see `rest.py`'s create_call).
"""

from __future__ import annotations

from typing import Any

from bottle import request

from dialtone.sandbox.api import errors as err
from dialtone.sandbox.api.paging import Answer, Params, check_method, is_url, list_page
from dialtone.sandbox.applications import APPLICATION_PARAMS, Application
from dialtone.sandbox.state import SandboxState, UnknownSid


class ApplicationsApi:
    """The handlers: each takes the request's Params (and the SID) and returns (status, body)."""

    def __init__(self, state: SandboxState) -> None:
        self.book = state.applications

    def list(self, params: Params) -> Answer:
        """GET Applications.json (FriendlyName filter, paging)."""
        apps = self.book.all()
        name = params.get("FriendlyName")
        if name:
            apps = [a for a in apps if a.friendly_name == name]
        items = [a.to_json() for a in apps]
        return 200, list_page(items, "applications", request.path, params)

    def create(self, params: Params) -> Answer:
        """POST Applications.json."""
        return 201, self.book.create(**_values(params)).to_json()

    def fetch(self, params: Params, sid: str) -> Answer:
        """GET Applications/{Sid}.json."""
        return 200, self._get(sid).to_json()

    def update(self, params: Params, sid: str) -> Answer:
        """POST Applications/{Sid}.json."""
        self._get(sid)
        updated = self.book.update(sid, **_values(params))
        if updated is None:  # deleted meanwhile
            raise UnknownSid(sid)
        return 200, updated.to_json()

    def delete(self, params: Params, sid: str) -> Answer:
        """DELETE Applications/{Sid}.json: 204."""
        if not self.book.delete(sid):
            raise UnknownSid(sid)
        return 204, {}

    def _get(self, sid: str) -> Application:
        app = self.book.get(sid)
        if app is None:
            raise UnknownSid(sid)
        return app


def _values(params: Params) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field in APPLICATION_PARAMS.items():
        value = params.get(name)
        if value is None:
            continue
        if name.endswith("Method"):
            values[field] = check_method(name, value)
        elif name.endswith(("Url", "Callback")):
            if value and not is_url(value):
                raise err.bad_request(err.CALL_URL_INVALID, f"{name} is not a valid URL: {value}")
            values[field] = value or None
        elif name in ("VoiceCallerIdLookup", "PublicApplicationConnectEnabled"):
            values[field] = value.lower() == "true"
        else:
            values[field] = value
    return values
