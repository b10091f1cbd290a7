"""`dialtone migrate`: the record created (or brought up to date) on its own, for deployments."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dialtone.record.errors import SchemaMismatch
from dialtone.record.store import Store
from tests.support.postgres import PostgresServer


def migrate(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m dialtone migrate` in `cwd` (no .env there) with `env` added."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "TWILIO_"))}
    return subprocess.run(
        [sys.executable, "-m", "dialtone", "migrate"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, **env},
        timeout=60,
        check=False,
    )


def test_migrate_creates_the_record_and_says_its_version(tmp_path: Path) -> None:
    database = tmp_path / "var" / "dialtone.db"
    result = migrate(tmp_path, DATABASE_PATH=str(database))
    assert result.returncode == 0, result.stderr
    with Store(database, readonly=True) as store:
        version = store.schema_version
    assert (
        result.stdout.strip() == f"The record ({database}) is ready, at schema version {version}."
    )
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    # Again: nothing to do, same answer.
    assert migrate(tmp_path, DATABASE_PATH=str(database)).stdout == result.stdout


def test_migrate_refuses_a_record_it_cannot_write_in_one_paragraph(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the record's directory should be")
    result = migrate(tmp_path, DATABASE_PATH=str(blocker / "dialtone.db"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(blocker) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_role_without_privileges_is_told_so_not_that_the_server_is_down(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    import psycopg

    url = postgres_server.fresh_database()  # owned by the server's superuser
    name = url.rsplit("/", 1)[1]
    role = f"visitor_{name}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    visitor = url.replace(f"//{postgres_server.user}@", f"//{role}@")
    result = migrate(tmp_path, DATABASE_URL=visitor)
    assert result.returncode == 2
    paragraph = result.stderr.strip()
    assert "\n" not in paragraph
    assert "Traceback" not in paragraph
    assert "cannot be used: permission denied for schema public" in paragraph
    assert "OWNER" in paragraph
    assert "LINE" not in paragraph  # the server's first line, not the SQL it quotes
    assert "the server is up" not in paragraph


def test_an_at_sign_in_the_password_is_refused_before_it_can_be_shown(tmp_path: Path) -> None:
    result = migrate(tmp_path, DATABASE_URL="postgresql://dialtone:p@ssw0rd@127.0.0.1:1/dialtone")
    assert result.returncode == 2
    assert "%40" in result.stderr
    assert "ssw0rd" not in result.stderr


def test_a_role_that_may_only_read_and_write_runs_a_migrated_record(
    postgres_server: PostgresServer,
) -> None:
    """Least privilege: once the owner has migrated, a role with table privileges only (no
    CREATE) starts and writes; it needs CREATE only when a migration is pending."""
    import psycopg

    from dialtone.record.postgres import PostgresStore

    url = postgres_server.fresh_database()
    PostgresStore(url).close()  # migrated by the owner
    name = url.rsplit("/", 1)[1]
    role = f"app_{name}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        )
        conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    app_url = url.replace(f"//{postgres_server.user}@", f"//{role}@")
    with PostgresStore(app_url) as store:
        assert store.health() is None
        store.set_opt_out("+15557654321", True, keyword="STOP")
        assert store.is_opted_out("+15557654321")
    # A newer Dialtone migrated it meanwhile: this one says so, not that a privilege lacks.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE dialtone_schema SET version = version + 1")
    with pytest.raises(SchemaMismatch, match="Upgrade Dialtone"):
        PostgresStore(app_url)


def test_a_database_that_does_not_answer_exits_75_to_be_tried_again(tmp_path: Path) -> None:
    """The migrate unit retries 75 (not reachable yet, as at boot), not 2 (a wrong password,
    a missing privilege: the same paragraph every 5 s)."""
    from tests.support.live_server import free_socket

    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    result = migrate(tmp_path, DATABASE_URL=f"postgresql://dialtone@127.0.0.1:{port}/dialtone")
    assert result.returncode == 75
    assert "cannot be reached" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_server_that_answers_no_exits_2_not_to_be_tried_again(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """A role or database that does not exist (as a wrong password) is a FATAL from the
    server: waiting will not mend it."""
    url = postgres_server.fresh_database()
    for wrong in (
        url.replace(f"//{postgres_server.user}@", "//nobody_here@"),
        url.rsplit("/", 1)[0] + "/no_such_database",
    ):
        result = migrate(tmp_path, DATABASE_URL=wrong)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
