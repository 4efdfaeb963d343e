"""HTTP load generator, run as its own process: ``python -m bench.loadgen SPEC.json OUT.json``.

Raw HTTP/1.1 over keep-alive connections on asyncio with uvloop: each request is a
pre-built byte string (headers and a realistic JSON body from ``tools.workload``), the
response is read by its ``Content-Length``. No HTTP client library sits in the way, so one
core drives several times more requests per second than the services under test answer
(``bench.apps null`` measures exactly that ceiling).

Two modes:

* ``closed``: ``concurrency`` connections, each sending its next request as soon as the
  previous answer arrived, for ``warmup + duration`` seconds; requests that complete inside
  the last ``duration`` seconds are counted. Latency = send to last byte of the response.
* ``open``: requests are started at a constant ``rate`` whatever the answers (at most
  ``concurrency`` in flight; a request waiting for a free connection waits in the
  latency), so slow answers do not lower the offered load (no coordinated omission).
  Latency = scheduled start to response.

Requests still unanswered ``GRACE_SECONDS`` after the end are abandoned (``abandoned``).

The result file holds throughput, status counts, latency percentiles and this process's
own CPU use (percent of one core) during the load.
"""

import asyncio
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.workload import Workload

GRACE_SECONDS = 10.0
"""After the schedule ends, requests still unanswered this much later are abandoned."""
_CONTENT_LENGTH = b"\r\ncontent-length:"
_CONNECTION_CLOSE = b"\r\nconnection: close"


@dataclass
class Spec:
    """What to send, how, for how long (seconds).

    Attributes:
        host / port / path: Target.
        headers: Extra request headers (e.g. ``X-API-Key``).
        mode: ``closed`` or ``open``.
        concurrency: Connections (closed), most requests in flight (open).
        rate: Requests per second (open).
        duration: Measured window.
        warmup: Seconds before the window.
        bodies: Distinct audit-event bodies cycled through.
        seed: Workload seed.
    """

    host: str
    port: int
    path: str = "/v1/audit-events"
    headers: dict[str, str] = field(default_factory=dict)
    mode: str = "closed"
    concurrency: int = 32
    rate: float = 0.0
    duration: float = 10.0
    warmup: float = 2.0
    bodies: int = 2000
    seed: int = 11


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False
        self.served = 0

    async def request(self, payload: bytes) -> int:
        """Send one request, read the whole response; returns the status code."""
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        start = lower.find(_CONTENT_LENGTH)
        if start < 0:
            raise ConnectionError("response without Content-Length")
        end = lower.find(b"\r\n", start + 2)
        length = int(lower[start + len(_CONTENT_LENGTH) : end])
        if length:
            await self.reader.readexactly(length)
        if _CONNECTION_CLOSE in lower:
            self.close()
        self.served += 1
        return status

    def close(self) -> None:
        self.closed = True
        self.writer.close()


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    error_types: Counter[str] = field(default_factory=Counter)
    retried: int = 0
    total: int = 0
    ok_total: int = 0
    abandoned: int = 0


def _payloads(spec: Spec) -> list[bytes]:
    workload = Workload(spec.seed)
    extra = "".join(f"{name}: {value}\r\n" for name, value in spec.headers.items())
    payloads = []
    for _ in range(spec.bodies):
        body = json.dumps(workload.audit()).encode()
        head = (
            f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
            f"Content-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
        )
        payloads.append(head.encode() + body)
    return payloads


async def _connect(spec: Spec) -> _Connection:
    reader, writer = await asyncio.open_connection(spec.host, spec.port)
    return _Connection(reader, writer)


_FAILURES = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


async def _send(
    spec: Spec, connection: _Connection | None, payload: bytes, tally: _Tally
) -> tuple[_Connection, int]:
    """One request; a kept-alive connection the server closed meanwhile is retried once
    on a new connection (the request never reached the application)."""
    if connection is None:
        connection = await _connect(spec)
    try:
        return connection, await connection.request(payload)
    except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
        connection.close()
        if not connection.served:
            raise
        tally.retried += 1
    except BaseException:
        connection.close()
        raise
    connection = await _connect(spec)
    try:
        return connection, await connection.request(payload)
    except BaseException:
        connection.close()
        raise


async def _closed(spec: Spec, payloads: list[bytes], tally: _Tally, start: float) -> None:
    warm_end = start + spec.warmup
    end = warm_end + spec.duration
    count = len(payloads)

    async def worker(index: int) -> None:
        connection: _Connection | None = None
        position = index
        while time.perf_counter() < end:
            try:
                sent = time.perf_counter()
                connection, status = await _send(
                    spec, connection, payloads[position % count], tally
                )
            except _FAILURES as exc:
                tally.errors += 1
                tally.error_types[type(exc).__name__] += 1
                if connection is not None:
                    connection.close()
                connection = None
                await asyncio.sleep(0.01)
                continue
            done = time.perf_counter()
            position += spec.concurrency
            tally.total += 1
            if 200 <= status < 300:
                tally.ok_total += 1
            if warm_end <= done <= end:
                tally.latencies.append(done - sent)
                tally.statuses[status] += 1
            if connection.closed:
                connection = None
        if connection is not None:
            connection.close()

    workers = [asyncio.create_task(worker(i)) for i in range(spec.concurrency)]
    _, late = await asyncio.wait(workers, timeout=end + GRACE_SECONDS - time.perf_counter())
    for task in late:
        task.cancel()
    tally.abandoned += len(late)


async def _open(spec: Spec, payloads: list[bytes], tally: _Tally, start: float) -> None:
    warm_end = start + spec.warmup
    total = round(spec.rate * (spec.warmup + spec.duration))
    idle: list[_Connection] = []
    slots = asyncio.Semaphore(spec.concurrency)
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int, due: float) -> None:
        status = 0
        async with slots:
            connection = idle.pop() if idle else None
            try:
                connection, status = await _send(
                    spec, connection, payloads[index % len(payloads)], tally
                )
            except _FAILURES as exc:
                tally.errors += 1
                tally.error_types[type(exc).__name__] += 1
                if connection is not None:
                    connection.close()
                connection = None
            done = time.perf_counter()
            if connection is not None and not connection.closed:
                idle.append(connection)
        tally.total += 1
        if 200 <= status < 300:
            tally.ok_total += 1
        if due >= warm_end and status:
            tally.latencies.append(done - due)
            tally.statuses[status] += 1

    for index in range(total):
        due = start + index / spec.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    end = start + spec.warmup + spec.duration
    if tasks:
        _, late = await asyncio.wait(set(tasks), timeout=end + GRACE_SECONDS - time.perf_counter())
        for task in late:
            task.cancel()
        tally.abandoned += len(late)
    for connection in idle:
        connection.close()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def run(spec: Spec) -> dict[str, Any]:
    """Generate the load described by ``spec``; returns the result document."""
    payloads = _payloads(spec)
    tally = _Tally()
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    started_unix = time.time()
    if spec.mode == "open":
        await _open(spec, payloads, tally, start)
    else:
        await _closed(spec, payloads, tally, start)
    elapsed = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_before
    ordered = sorted(tally.latencies)
    ok = sum(n for status, n in tally.statuses.items() if 200 <= status < 300)
    return {
        "spec": asdict(spec),
        "window_seconds": spec.duration,
        "completed": len(ordered),
        "ok": ok,
        "rate": ok / spec.duration,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": tally.errors,
        "error_types": dict(tally.error_types),
        "retried_on_new_connection": tally.retried,
        "abandoned": tally.abandoned,
        "total": tally.total,
        "ok_total": tally.ok_total,
        "latency_ms": {
            "p50": _percentile(ordered, 50) * 1000,
            "p95": _percentile(ordered, 95) * 1000,
            "p99": _percentile(ordered, 99) * 1000,
            "max": (ordered[-1] * 1000) if ordered else float("nan"),
        },
        "cpu_percent": cpu / elapsed * 100,
        "elapsed_seconds": elapsed,
        "started_unix": started_unix,
        "warmup_end_unix": started_unix + spec.warmup,
        "ended_unix": started_unix + elapsed,
    }


def main(argv: list[str]) -> int:
    """``SPEC.json OUT.json``."""
    spec = Spec(**json.loads(Path(argv[0]).read_text()))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    Path(argv[1]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
