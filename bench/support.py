"""What every scenario needs: statistics, CPU meters, the emulator, PostgreSQL, workloads."""

import asyncio
import json
import math
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import AuditEvent, EventEnvelope, new_envelope
from tools.processes import ManagedProcess, emulator_config_path
from tools.workload import Workload

POSTGRES_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
"""Where benchmark databases are created (and dropped again)."""
SOURCE = "/producer/clients/bench"
"""CloudEvents ``source`` of the events the benchmarks make."""

console = Console(stderr=True)


# --- statistics -------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; ``nan`` when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds of latencies given in seconds."""
    return {
        "p50_ms": percentile(seconds, 50) * 1000,
        "p95_ms": percentile(seconds, 95) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "max_ms": (max(seconds) * 1000) if seconds else math.nan,
    }


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median and spread (min, max, relative spread) of repeated runs."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "spread_pct": math.nan}
    median = statistics.median(clean)
    spread = (max(clean) - min(clean)) / median * 100 if median else math.nan
    return {
        "median": median,
        "min": min(clean),
        "max": max(clean),
        "spread_pct": spread,
        "runs": list(values),
    }


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, ``nan`` when undefined."""
    if denominator == 0 or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return numerator / denominator


# --- progress ---------------------------------------------------------------------------


class Reporter:
    """A rich progress bar over all planned steps, plus a log of results as they come."""

    def __init__(self, total_steps: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID = self._progress.add_task("benchmarks", total=total_steps)
        self._detail: TaskID = self._progress.add_task("", total=None)

    def __enter__(self) -> "Reporter":
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        """One planned step: shown while it runs, counted when it ends."""
        self._progress.update(self._task, description=label)
        self._progress.update(self._detail, description="")
        try:
            yield
        finally:
            self._progress.advance(self._task)

    def detail(self, text_: str) -> None:
        """Second line: what the current step is doing right now."""
        self._progress.update(self._detail, description=f"  [dim]{text_}")

    def log(self, message: str) -> None:
        self._progress.console.log(message)

    def add_steps(self, count: int) -> None:
        """More steps than planned (e.g. the search for the highest sustained rate)."""
        total = self._progress.tasks[0].total or 0
        self._progress.update(self._task, total=total + count)


# --- processes --------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds used by processes between :meth:`start` and :meth:`stop`.

    Percentages are of one core (200 % = both cores of a 2-core machine busy).
    """

    def __init__(self, pids: Mapping[str, int]) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._before: dict[str, float] = {}
        self._started = 0.0

    @staticmethod
    def _cpu(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return math.nan
        return float(times.user + times.system)

    def start(self) -> None:
        self._started = time.monotonic()
        self._before = {name: self._cpu(p) for name, p in self._processes.items()}

    def stop(self) -> dict[str, float]:
        """CPU % of one core per process over the interval."""
        wall = max(time.monotonic() - self._started, 1e-9)
        return {
            name: (self._cpu(p) - self._before[name]) / wall * 100
            for name, p in self._processes.items()
        }


def rss_mib(pid: int) -> float:
    """Resident set size of a process, MiB."""
    return psutil.Process(pid).memory_info().rss / 2**20


@dataclass
class EmulatorProcess:
    """A ``python -m emulator`` child process.

    Attributes:
        process: The process.
        connection_string: What it printed.
        started_in: Seconds from spawning to the connection string on stdout.
    """

    process: ManagedProcess
    connection_string: str
    started_in: float

    @property
    def pid(self) -> int:
        return self.process.process.pid

    def stop(self) -> int:
        return self.process.stop()


def start_emulator(log_dir: Path, config: Path | None = None) -> EmulatorProcess:
    """Start the emulator CLI on a free port (in-memory queues) and read its connection string."""
    started = time.perf_counter()
    process = ManagedProcess(
        "emulator",
        "emulator",
        args=[
            "--config",
            str(config or emulator_config_path()),
            "--port",
            "0",
            "--log-level",
            "WARNING",
        ],
        log_dir=log_dir,
        capture_stdout=True,
    )
    try:
        connection_string = process.read_line(timeout=60)
    except BaseException:
        process.stop()
        raise
    return EmulatorProcess(process, connection_string, time.perf_counter() - started)


class Stoppable(Protocol):
    def stop(self) -> int: ...


@contextmanager
def managed(*processes: Stoppable) -> Iterator[None]:
    """Stop the processes (last first) when the block exits."""
    try:
        yield
    finally:
        for process in reversed(processes):
            process.stop()


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    *,
    within: float,
    interval: float = 0.1,
    on_poll: Callable[[], None] | None = None,
) -> bool:
    """Poll ``condition`` until true or ``within`` seconds passed; returns its last value."""
    deadline = time.monotonic() + within
    while True:
        if await condition():
            return True
        if time.monotonic() > deadline:
            return False
        if on_poll is not None:
            on_poll()
        await asyncio.sleep(interval)


async def wait_process(
    process: ManagedProcess, *, within: float, on_poll: Callable[[], None] | None = None
) -> int:
    """Wait for a child to exit by itself; kill it after ``within`` seconds.

    Raises:
        RuntimeError: it did not exit in time or exited non-zero.
    """

    async def exited() -> bool:
        return process.process.poll() is not None

    finished = await wait_until(exited, within=within, interval=0.1, on_poll=on_poll)
    code = process.stop(timeout=5)
    if not finished:
        raise RuntimeError(
            f"{process.name} did not finish in {within:.0f}s; see {process.log_path}"
        )
    if code != 0:
        raise RuntimeError(f"{process.name} exited {code}; see {process.log_path}")
    return code


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# --- PostgreSQL -------------------------------------------------------------------------


@asynccontextmanager
async def postgres_database(label: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one run; dropped on exit. Yields its asyncpg URL."""
    name = f"bench_{label}_{os.getpid()}_{time.time_ns() % 10**9}"
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def postgres_version() -> str:
    """``SELECT version()`` of the local server, or why it could not be read."""
    engine = create_async_engine(POSTGRES_ADMIN_URL)
    try:
        async with engine.connect() as connection:
            return str(await connection.scalar(text("SHOW server_version")))
    except Exception as exc:
        return f"unavailable ({type(exc).__name__})"
    finally:
        await engine.dispose()


# --- workloads --------------------------------------------------------------------------


def audit_bodies(count: int, seed: int = 11) -> list[bytes]:
    """``count`` realistic ``POST /v1/audit-events`` bodies (``tools.workload``)."""
    workload = Workload(seed)
    return [json.dumps(workload.audit()).encode() for _ in range(count)]


def audit_envelopes(count: int, seed: int = 11, distinct: int = 2000) -> list[EventEnvelope]:
    """``count`` audit envelopes (new ids) as the producer would build them.

    Bodies repeat after ``distinct`` (generating and validating is the slow part).
    """
    events = [AuditEvent.model_validate_json(body) for body in audit_bodies(distinct, seed)]
    envelopes: list[EventEnvelope] = []
    for index in range(count):
        event = events[index % len(events)]
        envelopes.append(
            new_envelope(
                event,
                source=SOURCE,
                subject=f"{event.resource.type}/{event.resource.id}",
            )
        )
    return envelopes


@dataclass
class Settings:
    """Sizes and durations of one benchmark run (``--quick`` or full).

    Attributes:
        repeats: Runs per measured configuration.
        accept_seconds / accept_warmup: Measured window and warm-up per accept-path run.
        accept_concurrency: Closed-loop concurrency levels.
        publish_events: Outbox rows the relay drains.
        consume_messages: Messages per no-op / raw-loop consume run.
        io_seconds: Target length of an I/O-bound consume run.
        io_concurrency: Handler concurrency levels of the I/O-bound runs.
        e2e_seconds / e2e_warmup: Measured window of one end-to-end load and the seconds
            of load before it.
        e2e_start_rate / e2e_growth / e2e_max_probes: The search for the highest sustained
            rate starts at this rate (events/s), multiplies it while sustained, and runs at
            most this many loads.
        e2e_search_steps: Bisections between the highest sustained and lowest failing rate.
        e2e_fractions: Fractions of the highest sustained rate whose latency is reported.
        e2e_repeats: Sessions measuring those fractions, for the producer and consumer.
        e2e_target_rate / e2e_target_runs: Loads at a fixed rate (events/s) for the
            latest-event target.
        emulator_messages: Messages for the emulator memory and rate runs.
        emulator_repeats: Runs of those (each sends and receives ``emulator_messages``).
        startup_repeats: Emulator start-ups timed.
    """

    repeats: int = 3
    accept_seconds: float = 4.0
    accept_warmup: float = 1.5
    accept_concurrency: tuple[int, ...] = (8, 32)
    publish_events: int = 20_000
    consume_messages: int = 5_000
    io_seconds: float = 3.0
    io_concurrency: tuple[int, ...] = (1, 8, 32, 64)
    e2e_seconds: float = 5.0
    e2e_warmup: float = 1.5
    e2e_start_rate: int = 100
    e2e_growth: float = 2.0
    e2e_max_probes: int = 7
    e2e_search_steps: int = 1
    e2e_fractions: tuple[float, ...] = (0.25, 0.5, 0.75)
    e2e_repeats: int = 2
    e2e_target_rate: int = 100
    e2e_target_runs: int = 10
    emulator_messages: int = 50_000
    emulator_repeats: int = 1
    startup_repeats: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls) -> "Settings":
        return cls(
            repeats=1,
            accept_seconds=2.0,
            accept_warmup=1.0,
            publish_events=5_000,
            consume_messages=2_000,
            io_seconds=1.0,
            io_concurrency=(8, 32),
            e2e_seconds=2.0,
            e2e_warmup=1.0,
            e2e_start_rate=100,
            e2e_growth=3.0,
            e2e_max_probes=1,
            e2e_search_steps=0,
            e2e_fractions=(0.5,),
            e2e_repeats=1,
            e2e_target_runs=2,
            emulator_messages=10_000,
            emulator_repeats=1,
            startup_repeats=2,
        )


def target(
    name: str,
    value: float,
    goal: float,
    *,
    higher_is_better: bool = True,
    unit: str = "x",
    detail: str = "",
) -> dict[str, Any]:
    """A figure compared with its goal (for the report's target table)."""
    met = (value >= goal if higher_is_better else value <= goal) if not math.isnan(value) else False
    return {
        "name": name,
        "value": value,
        "target": goal,
        "comparison": ">=" if higher_is_better else "<=",
        "unit": unit,
        "met": met,
        "detail": detail,
    }
