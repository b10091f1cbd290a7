"""A cheap HTTP/1.1 load generator: N keep-alive connections on asyncio, pre-built requests.

Every request is built (and signed) before the clock starts, so the client's work per request is
one write and a small parse. A response with `Connection: close` (gunicorn's sync workers) makes
the connection reconnect, as a real client would. Latency is from the write to the last byte.

`run_at_rate` sends at a fixed rate instead, whatever the answers' pace, and counts each latency
from when its request was due: a server that falls behind is charged for the wait (no
"coordinated omission"), so targets are compared at the same load rather than each at its own
limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

STALL_SECONDS = 5.0  # after the run's duration, how long to wait for the last answers


@dataclass
class LoadResult:
    """What a load run did: answers by status, latencies in seconds, errors, wall time."""

    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    answered: list[int] = field(default_factory=list)  # indexes of requests answered 2xx
    sent: int = 0  # requests taken from the list (answered, failed or cut off)
    cpu: float = 0.0  # CPU seconds the server used meanwhile, when the caller measures it
    client_cpu: float = 0.0  # CPU seconds the load generator's process used meanwhile
    db_cpu: float = 0.0  # CPU seconds a database server used meanwhile (PostgreSQL rows)

    def merge(self, other: LoadResult) -> None:
        """Add another run's answers, latencies, errors and time to this one."""
        self.statuses.update(other.statuses)
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)
        self.elapsed += other.elapsed
        self.sent += other.sent
        self.cpu += other.cpu
        self.client_cpu += other.client_cpu
        self.db_cpu += other.db_cpu

    @property
    def count(self) -> int:
        """Requests answered (any status)."""
        return len(self.latencies)

    @property
    def rate(self) -> float:
        """Answers per second."""
        return self.count / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        """The p-th percentile latency in seconds (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))
        return ordered[rank]


def signed_request(
    host: str,
    path: str,
    form: dict[str, str],
    *,
    auth_token: str,
    public_url: str,
    idempotency_token: str | None = None,
) -> bytes:
    """One POST of `form` as Twilio sends it, signed for public_url + path, as raw bytes."""
    body = urlencode(form).encode()
    signature = RequestValidator(auth_token).compute_signature(public_url + path, form)
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {len(body)}",
        f"X-Twilio-Signature: {signature}",
        "User-Agent: TwilioProxy/1.1",
    ]
    if idempotency_token:
        lines.append(f"I-Twilio-Idempotency-Token: {idempotency_token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def inbound_sms_form(index: int, account_sid: str, to: str) -> dict[str, str]:
    """The fields of Twilio's inbound SMS webhook, with a MessageSid unique to `index`."""
    sid = f"SM{index:032x}"
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": f"hello {index}",
        "To": to,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": f"+1555{index % 10_000_000:07d}",
        "ApiVersion": "2010-04-01",
    }


# The next request for a connection: (its index, its bytes, when it was due or None for
# "now"), or None when there are no more.
Taker = Callable[[], Awaitable[tuple[int, bytes, float | None] | None]]


async def _connection(
    host: str,
    port: int,
    take: Taker,
    result: LoadResult,
    deadline: float,
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    clock = time.perf_counter
    try:
        while clock() < deadline:
            taken = await take()
            if taken is None:
                break
            index, request, due = taken
            result.sent += 1
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            started = clock() if due is None else due
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                status, length, close = _parse_head(head)
                if length:
                    await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                result.errors[type(exc).__name__] += 1
                writer.close()
                writer = None
                continue
            result.latencies.append(clock() - started)
            result.statuses[status] += 1
            if 200 <= status < 300:
                result.answered.append(index)
            if close:
                writer.close()
                writer = None
    except OSError as exc:
        result.errors[type(exc).__name__] += 1
    finally:
        if writer is not None:
            writer.close()


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, whether the server closes) from a response's head."""
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)]) if at >= 0 else 0
    close = b"\r\nconnection: close" in lower
    return status, length, close


def run(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    connections: int = 20,
    duration: float = 5.0,
) -> LoadResult:
    """Send `requests` in order over `connections` connections to one port until sent or
    `duration` ends."""
    return run_spread(host, [port], requests, connections=connections, duration=duration)


def doubled(requests: Iterable[bytes]) -> list[bytes]:
    """Each request twice in a row, so two connections send the same one at about once."""
    return [request for request in requests for _ in range(2)]


async def run_spread_async(
    host: str,
    ports: Sequence[int],
    requests: Sequence[bytes],
    *,
    connections: int,
    duration: float,
) -> LoadResult:
    """Send `requests` in order over `connections` connections, spread evenly over `ports`
    (instances behind a load balancer), all taking the next request from one queue, until sent
    or `duration` ends."""
    work = iter(enumerate(requests))  # shared: each connection takes the next request

    async def take() -> tuple[int, bytes, float | None] | None:
        taken = next(work, None)
        return None if taken is None else (*taken, None)

    return await _load(host, ports, take, connections, duration)


def run_at_rate(
    host: str,
    ports: Sequence[int],
    requests: Sequence[bytes],
    *,
    rate: float,
    duration: float,
    connections: int = 64,
) -> LoadResult:
    """Send `requests` in order at `rate` a second for `duration` seconds over up to
    `connections` connections spread over `ports`; each latency counts from when its request
    was due. A request due while every connection waits for an answer waits for one, and that
    wait is part of its latency."""
    return asyncio.run(_at_rate(host, ports, requests, rate, duration, connections))


async def _at_rate(
    host: str,
    ports: Sequence[int],
    requests: Sequence[bytes],
    rate: float,
    duration: float,
    connections: int,
) -> LoadResult:
    due: asyncio.Queue[tuple[int, bytes, float] | None] = asyncio.Queue()
    count = min(len(requests), int(rate * duration))
    first = time.perf_counter() + 0.01

    async def pace() -> None:
        for index in range(count):
            when = first + index / rate
            ahead = when - time.perf_counter()
            if ahead > 0.0005:  # below that, sleeping costs more than it saves
                await asyncio.sleep(ahead)
            due.put_nowait((index, requests[index], when))
        for _ in range(connections):
            due.put_nowait(None)  # one "no more" for each connection

    pacer = asyncio.ensure_future(pace())
    try:
        # Every request due is sent, however far behind the server: connections stop at None.
        result = await _load(host, ports, due.get, connections, duration, cut_off=False)
    finally:
        pacer.cancel()
    if result.sent < count:  # still waiting when the stall timeout ended the run
        result.errors["never sent"] += count - result.sent
    return result


async def _load(
    host: str,
    ports: Sequence[int],
    take: Taker,
    connections: int,
    duration: float,
    *,
    cut_off: bool = True,
) -> LoadResult:
    """`connections` connections spread evenly over `ports`, each sending what `take` gives it
    until it gives None or (when `cut_off`) `duration` ends."""
    result = LoadResult()
    started = time.perf_counter()
    deadline = started + duration if cut_off else float("inf")
    tasks = [
        asyncio.ensure_future(_connection(host, ports[n % len(ports)], take, result, deadline))
        for n in range(connections)
    ]
    # A server that stops answering must not hang the run: whatever is still waiting after
    # the grace period counts as a timeout.
    _, waiting = await asyncio.wait(tasks, timeout=duration + STALL_SECONDS)
    for task in waiting:
        task.cancel()
        result.errors["timeout"] += 1
    await asyncio.gather(*waiting, return_exceptions=True)
    result.elapsed = time.perf_counter() - started
    return result


def run_spread(
    host: str,
    ports: Sequence[int],
    requests: Sequence[bytes],
    *,
    connections: int = 20,
    duration: float = 5.0,
) -> LoadResult:
    """`run_spread_async` on a fresh event loop."""
    return asyncio.run(
        run_spread_async(host, ports, requests, connections=connections, duration=duration)
    )
