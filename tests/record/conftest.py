"""The record's tests run against both backends: SQLite, then a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dialtone.record.base import RecordStore
from dialtone.settings import Settings
from tests.support.postgres import BACKENDS, open_backend


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, settings: Settings) -> Iterator[RecordStore]:
    """The record the `app` fixture writes to, in SQLite and then in PostgreSQL."""
    with open_backend(request, request.param, settings.database_path) as opened:
        yield opened
