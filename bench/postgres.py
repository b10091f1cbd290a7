"""`make bench`'s PostgreSQL rows: two Dialtone instances recording into one PostgreSQL.

PostgreSQL runs on this machine (started for the run in a temporary directory, with its own
durable defaults: fsync and synchronous commit on, and its WAL warmed as a running server's
is), and the load generator spreads its connections over the two instances' ports, as a load
balancer in front of them would.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench import loadgen
from bench.run import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    HOST,
    PHONE_NUMBER,
    PUBLIC_URL,
    ROOT,
    Target,
    build_requests,
    free_port,
    server,
)

# The test suite's throwaway server (initdb/pg_ctl as the postgres user when run as root).
sys.path.insert(0, str(ROOT))
from tests.support.postgres import PostgresServer, postgres_bin

INSTANCES = 2


@contextmanager
def postgresql() -> Iterator[PostgresServer | None]:
    """A durable PostgreSQL server for the run, or None (with a line saying why)."""
    bindir = postgres_bin()
    if bindir is None:
        print("PostgreSQL rows skipped: apt-get install -y postgresql to have them")
        yield None
        return
    pg = PostgresServer(bindir, durable=True).init()
    pg.start()
    try:
        warm_wal(pg)
        yield pg
    finally:
        pg.destroy()


WARM_WAL_MB = 600  # more WAL than the PostgreSQL rows write in a full run


def warm_wal(pg: PostgresServer, megabytes: int = WARM_WAL_MB) -> None:
    """Write and recycle `megabytes` of WAL, as a server that has run a while has done.

    A new cluster creates each 16 MB WAL segment when the last one fills, writing it full of
    zeros and fsyncing it while every commit waits; a running server reuses the segments its
    checkpoints recycled. Measured with two instances on this 2-core machine, the new cluster
    answered 2,581 webhooks a second at p99 18.0 ms, the warmed one 3,118 at 13.6 ms.
    """
    import psycopg

    rows = megabytes * 1_000_000 // 560  # about 560 bytes of WAL a row
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE wal_filler AS "
            f"SELECT g, repeat('x', 500) AS pad FROM generate_series(1, {rows}) AS g"
        )
        conn.execute("DROP TABLE wal_filler")
        conn.execute("CHECKPOINT")  # the segments written are kept for reuse


def without_commit_wait(pg: PostgresServer, url: str) -> str:
    """`url`'s database with synchronous_commit off (what an operator sets with ALTER ROLE or
    ALTER DATABASE): a commit returns before its WAL is flushed, as SQLite's synchronous=NORMAL
    does; a crash of the PostgreSQL server can lose the last fraction of a second."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
    return url


def postmaster_pid(pg: PostgresServer) -> int:
    """The PostgreSQL server's main process (its backends are its children)."""
    return int((pg.data / "postmaster.pid").read_text().split()[0])


def start_instances(
    args: argparse.Namespace,
    work: Path,
    stack: ExitStack,
    url: str,
    label: str = "",
    *,
    database_pid: int = 0,
) -> Target:
    """INSTANCES server.py processes (WORKERS=1 each) recording into the database at `url`."""
    ports, pids = [], []
    cpus = os.cpu_count() or 1
    pin = args.pg_pin and shutil.which("taskset") is not None and cpus >= 2
    for n in range(INSTANCES):
        port = free_port()
        env = {
            "PORT": str(port),
            "HOST": HOST,
            "WORKERS": str(args.pg_workers),
            "THREADS": str(args.pg_threads),
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": PHONE_NUMBER,
            "PUBLIC_URL": PUBLIC_URL,
            "RULES_FILE": str(ROOT / "rules.toml"),
            "ROUTES_DIR": str(ROOT / "routes"),
            "LOG_LEVEL": "INFO",
            "DATABASE_URL": url,
        }
        cmd = [sys.executable, str(ROOT / "server.py")]
        if pin:  # CPU n of the machine's, as CPUAffinity= in instance n's unit would
            cmd = ["taskset", "--cpu-list", str(n % cpus), *cmd]
        log = work / f"pg{label.replace(' ', '-')}-instance-{n}.log"
        pids.append(stack.enter_context(server(cmd, env, log, port)))
        ports.append(port)
    name = (
        f"Dialtone {INSTANCES} instances WORKERS={args.pg_workers} THREADS={args.pg_threads}, "
        "POST /sms_url, "
        f"recording into PostgreSQL{label}" + (", each on a CPU of its own" if pin else "")
    )
    requests = build_requests(ports[0], "/sms_url", 0, args.pool)
    return Target(
        name, ports[0], requests, pids[0], ports=ports, pids=pids, database_pid=database_pid
    )


def check_record(url: str, sent: set[int]) -> list[str]:
    """Every answered message in PostgreSQL exactly once (messages rows and events)."""
    import psycopg

    expected = {f"SM{index:032x}" for index in sent}
    with psycopg.connect(url) as conn:
        stored: dict[str, int] = dict(
            conn.execute("SELECT sid, count(*) FROM messages GROUP BY sid").fetchall()
        )
        events: dict[str, int] = dict(
            conn.execute("SELECT sid, count(*) FROM events GROUP BY sid").fetchall()
        )
    missing = expected - stored.keys()
    repeated = {sid for sid, n in stored.items() if n != 1}
    repeated |= {sid for sid in expected if events.get(sid, 0) != 1}
    verdict = "OK" if not (missing or repeated) else "FAILED"
    return [
        f"{verdict} (PostgreSQL): {len(expected)} messages answered 2xx; in the database: "
        f"{len(expected) - len(missing)}, missing {len(missing)}, more than once {len(repeated)}"
    ]


def goal_lines(
    name: str, pg: loadgen.LoadResult, flask: loadgen.LoadResult | None
) -> tuple[list[str], bool]:
    """The PostgreSQL goal: at least Flask/gunicorn's throughput, with p99 no worse."""
    if flask is None or not flask.rate:
        return [f"goal ({name}): not compared, no Flask/gunicorn row"], True
    rate_ok = pg.rate >= flask.rate
    p99_ok = pg.percentile(99) <= flask.percentile(99)
    mark = {True: "met", False: "NOT MET"}
    return [
        f"goal: {name} >= Flask/gunicorn throughput: "
        f"{pg.rate:.0f} vs {flask.rate:.0f} req/s ({pg.rate / flask.rate:.2f}x)  {mark[rate_ok]}",
        f"goal: {name} p99 <= Flask/gunicorn p99: {pg.percentile(99) * 1000:.1f} vs "
        f"{flask.percentile(99) * 1000:.1f} ms  {mark[p99_ok]}",
    ], rate_ok and p99_ok
