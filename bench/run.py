"""`make bench`: signed webhooks per second, latency and memory, on real servers over loopback.

python -m bench.run [--quick] [--route /sms_url] [--duration 5] [--connections 20]
                    [--rates 1000,2000] [--rate-seconds 6]

Targets, measured one after the other in the same run with the same load generator:
  ceiling   a bare WSGI app on waitress returning a fixed TwiML string (bench/bare_server.py)
  flask     Flask + gunicorn, 2 sync workers, same RequestValidator check and MessagingResponse
  dialtone  server.py with WORKERS=2 (two instances, each with its own SO_REUSEPORT socket; and
            WORKERS=1 for comparison), recording on when the store
            exists; the route is --route, or /sms_url when the app has it, else /status
  pg        two server.py instances recording into one PostgreSQL on this machine (bench/postgres.py)

Then Flask, the PostgreSQL rows and Dialtone WORKERS=2 again at each fixed rate of --rates: the
same load for all, so that their latencies compare at equal load rather than each at its limit.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import dev_ready, loadgen
from dialtone.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"  # noqa: S105 (a made-up token)
ACCOUNT_SID = "AC" + "b" * 32
PHONE_NUMBER = "+15550001111"
PUBLIC_URL = "https://bench.dialtone.test"
MAX_RATE = 20000  # requests built per second of run: more than any target here answers
GOAL_RATIO, GOAL_P99_MS, GOAL_IDLE_MB = 1.2, 10.0, 40.0


@dataclass
class RateRow:
    """One target's line at one fixed rate."""

    name: str
    rate: float
    result: loadgen.LoadResult = field(default_factory=loadgen.LoadResult)


@dataclass
class Row:
    """One target's line in the table."""

    name: str
    result: loadgen.LoadResult
    note: str = ""
    rss_idle: dict[int, float] = field(default_factory=dict)  # pid -> MB
    rss_loaded: dict[int, float] = field(default_factory=dict)


def free_port() -> int:
    """A loopback TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Block until something accepts on `port`; fail if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode} before listening")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listened on port {port} within {timeout:.0f} s")


@contextmanager
def server(cmd: Sequence[str], env: dict[str, str], log: Path, port: int) -> Iterator[int]:
    """Run a server process (cwd: a temp dir, stderr to `log`); yield its pid; SIGTERM it."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(cmd), cwd=log.parent, env={**os.environ, **env}, stdout=out, stderr=out
        )
    try:
        wait_until_listening(port, proc)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def children(pid: int) -> list[int]:
    """The pids of a process's children, from /proc."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(word) for word in text.split()]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a server process and its children."""
    total = 0
    for one in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    """Samples the peak RSS of some processes while a load runs."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            self.sample()

    def sample(self) -> None:
        for pid in self.pids:
            self.peak[pid] = max(self.peak[pid], rss_mb(pid))

    def stop(self) -> dict[int, float]:
        self.done.set()
        self.join()
        self.sample()
        return self.peak


def build_requests(port: int, route: str, first: int, count: int) -> list[bytes]:
    """`count` signed inbound-SMS webhooks with MessageSids first..first+count-1."""
    host = f"{HOST}:{port}"
    return [
        loadgen.signed_request(
            host,
            route,
            loadgen.inbound_sms_form(index, ACCOUNT_SID, PHONE_NUMBER),
            auth_token=AUTH_TOKEN,
            public_url=PUBLIC_URL,
            idempotency_token=f"bench-{index}",
        )
        for index in range(first, first + count)
    ]


def reused_requests(port: int, count: int, distinct: int = 2000) -> list[bytes]:
    """`count` requests made of `distinct` signed ones repeated (for targets that record nothing)."""
    pool = build_requests(port, "/sms_url", 0, distinct)
    return (pool * (count // distinct + 1))[:count]


def probe(port: int, request: bytes) -> int:
    """Send one raw request; its status."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(request)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        answer.read()
        return answer.status


@dataclass
class Target:
    """A running server under test and the requests it is sent: one process on one port, or
    several instances behind one (imaginary) load balancer (`ports`, `pids`)."""

    name: str
    port: int
    requests: list[bytes]
    pid: int = 0
    result: loadgen.LoadResult = field(default_factory=loadgen.LoadResult)
    offset: int = 0  # requests already sent (each is sent once: fresh MessageSids)
    answered: set[int] = field(default_factory=set)  # indexes into requests, answered 2xx
    ports: list[int] = field(default_factory=list)  # every instance's port (default: port)
    pids: list[int] = field(default_factory=list)  # every instance's process (default: pid)
    database_pid: int = 0  # a PostgreSQL postmaster: its CPU and its backends'

    def __post_init__(self) -> None:
        self.ports = self.ports or [self.port]
        self.pids = self.pids or [self.pid]

    def send(self, args: argparse.Namespace, duration: float) -> loadgen.LoadResult:
        """The next requests for `duration` seconds; answers counted into `answered`."""
        processes = self.pids
        cpu_before = sum(cpu_seconds(pid) for pid in processes)
        db_before = cpu_seconds(self.database_pid) if self.database_pid else 0.0
        client_before = time.process_time()
        result = self._sent(
            loadgen.run_spread(
                HOST,
                self.ports,
                self.requests[self.offset :],
                connections=args.connections,
                duration=duration,
            )
        )
        result.cpu = sum(cpu_seconds(pid) for pid in processes) - cpu_before
        if self.database_pid:
            result.db_cpu = cpu_seconds(self.database_pid) - db_before
        result.client_cpu = time.process_time() - client_before
        return result

    def send_at_rate(self, rate: float, duration: float) -> loadgen.LoadResult:
        """The next requests at `rate` a second for `duration` seconds."""
        return self._sent(
            loadgen.run_at_rate(
                HOST, self.ports, self.requests[self.offset :], rate=rate, duration=duration
            )
        )

    def _sent(self, result: loadgen.LoadResult) -> loadgen.LoadResult:
        """Count a run's requests as sent, and its 2xx answers into `answered`."""
        self.answered |= {self.offset + index for index in result.answered}
        self.offset += result.sent
        return result


def measure(targets: list[Target], args: argparse.Namespace) -> None:
    """Warm each target up, then load them in turn, ROUNDS times each, so that whatever else
    the machine is doing meanwhile weighs on every target alike; results are merged."""
    for target in targets:
        target.send(args, 0.5)
    for _ in range(args.rounds):
        for target in targets:
            target.result.merge(target.send(args, args.duration / args.rounds))


def measure_at_rates(targets: list[Target], args: argparse.Namespace) -> list[RateRow]:
    """Each target at each of `args.rates` requests a second, in interleaved rounds."""
    rows = {
        (target.name, rate): RateRow(target.name, rate) for target in targets for rate in args.rates
    }
    for _ in range(args.rounds):
        for rate in args.rates:
            for target in targets:
                result = target.send_at_rate(rate, args.rate_seconds / args.rounds)
                rows[target.name, rate].result.merge(result)
    return list(rows.values())


def start_ceiling(args: argparse.Namespace, work: Path, stack: ExitStack) -> Target:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.bare_server", str(port), "2", str(args.threads)]
    pid = stack.enter_context(server(cmd, {"PYTHONPATH": str(ROOT)}, work / "ceiling.log", port))
    name = "ceiling: bare WSGI on waitress, 2 processes"
    return Target(name, port, reused_requests(port, args.pool), pid)


def start_flask(args: argparse.Namespace, work: Path, stack: ExitStack) -> Target | None:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        print("gunicorn is not installed: make bench installs requirements-bench.txt")
        return None
    port = free_port()
    cmd = [str(gunicorn), "-w", "2", "-k", "sync", "-b", f"{HOST}:{port}"]
    cmd += ["--chdir", str(ROOT), "bench.flask_app:create_app()"]
    env = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_URL": PUBLIC_URL}
    pid = stack.enter_context(server(cmd, env, work / "flask.log", port))
    return Target("Flask + gunicorn, 2 sync workers", port, reused_requests(port, args.pool), pid)


def recording_available() -> bool:
    """True once Dialtone has the SQLite record (a DATABASE_PATH setting)."""
    return hasattr(Settings(), "database_path")


def dialtone_database(work: Path, workers: int, label: str = "") -> Path:
    return work / f"dialtone-{workers}{label.replace('@', '-')}.sqlite3"


def start_dialtone(
    args: argparse.Namespace,
    work: Path,
    stack: ExitStack,
    workers: int,
    *,
    root: Path = ROOT,
    label: str = "",
) -> Target:
    """server.py (of the checkout at `root`) on `workers` processes, recording into a fresh
    database."""
    port = free_port()
    env = {
        "PORT": str(port),
        "HOST": HOST,
        "WORKERS": str(workers),
        "THREADS": str(args.threads),
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": PHONE_NUMBER,
        "PUBLIC_URL": PUBLIC_URL,
        "VALIDATE_SIGNATURES": "true",
        "RULES_FILE": str(root / "rules.toml"),
        "ROUTES_DIR": str(root / "routes"),  # the server runs in a temporary directory
        "LOG_LEVEL": "INFO",
        "DATABASE_PATH": str(dialtone_database(work, workers, label)),
    }
    cmd = [sys.executable, str(root / "server.py")]
    if root != ROOT:  # an older checkout: its own code first, not this one's
        env["PYTHONPATH"] = str(root)
    log = work / f"dialtone-{workers}{label}.log"
    pid = stack.enter_context(server(cmd, env, log, port))
    route = args.route or pick_route(port)
    recording = "recording on" if recording_available() else "no store yet"
    name = f"Dialtone{label} WORKERS={workers} THREADS={args.threads}, POST {route}, {recording}"
    return Target(name, port, build_requests(port, route, 0, args.pool), pid)


@contextmanager
def checkout(ref: str, work: Path) -> Iterator[Path]:
    """A detached git worktree of `ref` in `work`, removed afterwards."""
    path = work / "baseline"
    git = ["git", "-C", str(ROOT)]
    subprocess.run([*git, "worktree", "add", "--detach", "-q", str(path), ref], check=True)
    try:
        yield path
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(path)], check=False)


def send_twice(target: Target, route: str, args: argparse.Namespace) -> tuple[set[int], str]:
    """Messages each sent twice at about once; the indexes answered and a summary line."""
    pairs = max(100, args.pool // 20)
    twice = loadgen.doubled(build_requests(target.port, route, 10**9, pairs))
    dup = loadgen.run(HOST, target.port, twice, connections=args.connections, duration=30)
    line = (
        f"duplicates run: {pairs} messages sent twice each (same I-Twilio-Idempotency-Token, "
        f"on two connections at once): {dict(dup.statuses)} {dict(dup.errors) or ''}"
    )
    return {10**9 + index // 2 for index in dup.answered}, line


def pick_route(port: int) -> str:
    """/sms_url when the app has it, else the signed /status route."""
    request = build_requests(port, "/sms_url", 10**10, 1)[0]
    deadline = time.monotonic() + 10
    while True:
        try:
            return "/sms_url" if probe(port, request) != 404 else "/status"
        except ConnectionError:
            # The port listens as soon as the first instance does; another may still be starting.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def check_database(database: Path, sent: set[int], sent_twice: set[int]) -> list[str]:
    """Every answered message in the record exactly once: messages rows and events."""
    if not recording_available():
        return ["not checked: this Dialtone has no store yet (no DATABASE_PATH setting)"]
    if not database.exists():
        return [f"FAILED: no database at {database}"]
    expected = {f"SM{index:032x}" for index in sent | sent_twice}
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT sid, COUNT(*) FROM messages GROUP BY sid").fetchall()
        events = dict(conn.execute("SELECT sid, COUNT(*) FROM events GROUP BY sid").fetchall())
    stored = dict(rows)
    missing = expected - stored.keys()
    extra = stored.keys() - expected - {f"SM{10**10:032x}"}  # the route probe
    repeated = {sid for sid, count in stored.items() if count != 1}
    repeated |= {sid for sid in expected if events.get(sid, 0) != 1}
    verdict = "OK" if not (missing or repeated) else "FAILED"
    return [
        f"{verdict}: {len(expected)} messages answered 2xx ({len(sent)} in the warm-up and timed run, "
        f"{len(sent_twice)} sent twice); in the database: {len(expected) - len(missing)}, "
        f"missing {len(missing)}, more than once {len(repeated)}, unexpected {len(extra)}"
    ]


def outcomes(res: loadgen.LoadResult) -> str:
    """A table's last column: the answers by status, then the errors by kind."""
    answers = " ".join(f"{status}:{n}" for status, n in sorted(res.statuses.items()))
    errors = " ".join(f"{name}:{n}" for name, n in res.errors.items())
    return f"{answers} {errors}".rstrip()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(rows: list[Row], record_lines: list[str], args: argparse.Namespace) -> bool:
    """Print the tables; True if every goal was met."""
    print()
    print(
        f"Dialtone benchmark: {args.connections} connections, {args.duration:g} s per target "
        f"in {args.rounds} interleaved rounds, loopback, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    flask = next((row for row in rows if row.name.startswith("Flask")), None)
    width = max(len(row.name) for row in rows)
    header = (
        f"{'target':<{width}}  {'req/s':>7}  {'p50 ms':>6}  {'p99 ms':>6}  {'vs Flask':>8}  "
        f"{'CPU us/req':>10}  {'client':>6}  {'db':>4}"
    )
    print(header + "  answers")
    print("-" * (len(header) + 20))
    for row in rows:
        res = row.result
        ratio = f"{res.rate / flask.result.rate:.2f}x" if flask and flask.result.rate else "-"
        cpu = f"{res.cpu / res.count * 1e6:.0f}" if res.count else "-"
        client = f"{res.client_cpu / res.count * 1e6:.0f}" if res.count else "-"
        db = f"{res.db_cpu / res.count * 1e6:.0f}" if res.count and res.db_cpu else "-"
        print(
            f"{row.name:<{width}}  {res.rate:>7.0f}  {ms(res.percentile(50)):>6}  "
            f"{ms(res.percentile(99)):>6}  {ratio:>8}  {cpu:>10}  {client:>6}  {db:>4}  "
            f"{outcomes(res)}"
        )
    met = True
    main = rows[-1]
    print()
    if flask and flask.result.rate:
        times = main.result.rate / flask.result.rate
        ok = times >= GOAL_RATIO
        met &= ok
        print(f"goal: Dialtone >= {GOAL_RATIO}x Flask/gunicorn: {times:.2f}x  {_mark(ok)}")
    p99 = main.result.percentile(99) * 1000
    met &= p99 < GOAL_P99_MS
    print(
        f"goal: p99 < {GOAL_P99_MS:g} ms at {args.connections} connections: {p99:.1f} ms  {_mark(p99 < GOAL_P99_MS)}"
    )
    print()
    print(f"Resident memory (VmRSS) of each Dialtone worker process, {main.name}:")
    for pid, idle in main.rss_idle.items():
        ok = idle < GOAL_IDLE_MB
        met &= ok
        print(
            f"  pid {pid}: idle {idle:.1f} MB (goal < {GOAL_IDLE_MB:g} MB {_mark(ok)}), "
            f"loaded (peak) {main.rss_loaded.get(pid, 0):.1f} MB"
        )
    print()
    print("Record (every message answered during the load is stored exactly once):")
    for line in record_lines:
        print("  " + line)
        met &= not line.startswith("FAILED")
    print()
    print("make dev, time from start to ready (issue 4):")
    for line in dev_ready.measure(args.quick) or ["not measured yet"]:
        print("  " + line)
    return met


def report_rates(rows: list[RateRow], args: argparse.Namespace) -> None:
    """The fixed-rate table: every target at the same load, latencies from when each request
    was due."""
    if not rows:
        return
    print()
    print(
        f"Latency at fixed rates ({args.rate_seconds:g} s per target and rate, in "
        f"{args.rounds} interleaved rounds; each latency counted from when its request was due):"
    )
    width = max(len(row.name) for row in rows)
    header = f"{'target':<{width}}  {'req/s':>6}  {'p50 ms':>6}  {'p99 ms':>6}  {'p99.9 ms':>8}"
    print(header + "  answers")
    print("-" * (len(header) + 20))
    for row in sorted(rows, key=lambda row: row.rate):
        res = row.result
        print(
            f"{row.name:<{width}}  {row.rate:>6.0f}  {ms(res.percentile(50)):>6}  "
            f"{ms(res.percentile(99)):>6}  {ms(res.percentile(99.9)):>8}  {outcomes(res)}"
        )


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1-second smoke run")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per target")
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument(
        "--threads", type=int, default=1, help="THREADS: waitress threads per worker process"
    )
    parser.add_argument("--rounds", type=int, default=3, help="turns each target gets")
    parser.add_argument("--route", help="Dialtone's webhook route (default: /sms_url or /status)")
    parser.add_argument(
        "--targets",
        default="ceiling,flask,dialtone1,pg",
        help="which targets besides Dialtone WORKERS=2, comma-separated (default: all)",
    )
    parser.add_argument(
        "--pg-threads",
        type=int,
        default=2,
        help="THREADS of each PostgreSQL instance (2, as docs/deployment.md recommends)",
    )
    parser.add_argument(
        "--pg-workers", type=int, default=1, help="WORKERS of each PostgreSQL instance (1)"
    )
    parser.add_argument(
        "--pg-pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pin each PostgreSQL instance to a CPU of its own with taskset, as CPUAffinity= "
        "in docs/deployment.md does (default: on, where taskset and a CPU per instance are)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run Dialtone WORKERS=2 as it was at this git commit (a before/after A/B)",
    )
    parser.add_argument(
        "--rates",
        type=rates,
        default="1000",
        help="fixed request rates to compare Flask and Dialtone's latencies at, comma-separated "
        "(1000; 'none' to skip)",
    )
    parser.add_argument(
        "--rate-seconds", type=float, default=6.0, help="seconds per target at each fixed rate"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds = min(args.duration, 1.0), 1
        args.rate_seconds = min(args.rate_seconds, 1.0)
    args.pool = int(args.duration * MAX_RATE + sum(args.rates) * args.rate_seconds)
    return args


def rates(text: str) -> list[float]:
    """--rates: '1000,2000' -> [1000.0, 2000.0]; 'none' -> []."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"rates are requests a second, above 0: {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Start every target, load them in interleaved rounds and print the report."""
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dialtone-bench-"))
    record_lines: list[str] = []
    try:
        with ExitStack() as stack:
            targets = [start_ceiling(args, work, stack)] if "ceiling" in args.targets else []
            flask = start_flask(args, work, stack) if "flask" in args.targets else None
            targets += [flask] if flask else []
            if "dialtone1" in args.targets and not args.quick:
                targets.append(start_dialtone(args, work, stack, 1))
            pg_targets: list[tuple[str, Target, str]] = []  # (goal name, target, its URL)
            if "pg" in args.targets:
                from bench import postgres

                pg = stack.enter_context(postgres.postgresql())
                if pg is not None:
                    db_pid = postgres.postmaster_pid(pg)
                    fast = postgres.without_commit_wait(pg, pg.fresh_database())
                    durable = pg.fresh_database()
                    for goal, url, label in (
                        ("PostgreSQL synchronous_commit=off", fast, ", synchronous_commit=off"),
                        ("PostgreSQL (durable commits)", durable, ""),
                    ):
                        spread = postgres.start_instances(
                            args, work, stack, url, label, database_pid=db_pid
                        )
                        pg_targets.append((goal, spread, url))
                    targets += [target for _, target, _ in pg_targets]
            if args.baseline:
                old = stack.enter_context(checkout(args.baseline, work))
                label = f"@{args.baseline[:12]}"
                targets.append(start_dialtone(args, work, stack, 2, root=old, label=label))
            main_target = start_dialtone(args, work, stack, 2)
            targets.append(main_target)
            pids = children(main_target.pid) or [main_target.pid]
            idle = {pid: rss_mb(pid) for pid in pids}
            sampler = RssSampler(pids)
            sampler.start()
            measure(targets, args)
            loaded = sampler.stop()
            at_rates = [flask] if flask else []
            at_rates += [target for _, target, _ in pg_targets] + [main_target]
            rate_rows = measure_at_rates(at_rates, args)
            sent_twice: set[int] = set()
            if recording_available():
                route = main_target.name.split("POST ", 1)[1].split(",")[0]
                sent_twice, line = send_twice(main_target, route, args)
                record_lines.append(line)
            for _, target, url in pg_targets:
                record_lines += postgres.check_record(url, target.answered)
        # The servers have stopped (and closed the record) before it is read.
        record_lines += check_database(dialtone_database(work, 2), main_target.answered, sent_twice)
        rows = [Row(target.name, target.result) for target in targets if target is not main_target]
        rows.append(Row(main_target.name, main_target.result, rss_idle=idle, rss_loaded=loaded))
        met = report(rows, record_lines, args)
        for name, target, _ in pg_targets:
            lines, pg_met = postgres.goal_lines(
                name, target.result, flask.result if flask else None
            )
            print("\n".join(lines))
            met &= pg_met
        report_rates(rate_rows, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("All goals met." if met else "Some goals NOT met (see above).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
