"""Scenario 4 -- end to end: HTTP -> queue -> handler at constant arrival rates.

Systems, each measured the same way:

* ``ours``: a fresh emulator, ``python -m consumer`` (audit store on SQLite, as ``make
  run``) and ``python -m producer`` (outbox on SQLite), telemetry off.
* ``ours-otel``: the same with the shipped telemetry defaults in both processes,
  exporting OTLP/HTTP to :mod:`bench.otlp_sink` on loopback.
* ``celery`` / ``arq``: ``bench.apps celery|arq`` enqueueing on the local Redis and the
  framework's own worker at its defaults (:mod:`bench.taskqueues`); the job validates the
  event and notes the time, and writes nothing durable.

A *session* is one started system; several loads run on it one after the other, each
only once the previous one's events were all handled (a session that cannot catch up is
replaced by a fresh one). :mod:`bench.loadgen` in ``open`` mode starts ``POST
/v1/audit-events`` requests at a constant rate whatever the answers.

Latency of an event = handled - accepted, both this machine's clock: for ours the audit
store's ``recorded_at`` - the envelope's ``time`` (stamped when the producer accepted the
request); for Celery and ARQ the job's finish - the endpoint's ``time.time()`` before
enqueueing. Only events accepted inside the measured window count.

A rate is *sustained* when >= 97 % of the offered requests got a 2xx with no errors,
>= 97 % of the offered rate was handled during the window, and everything accepted was
handled within 2 s of the window's end.

Per system, in this order:

1. **Highest sustained rate**: loads at ``e2e_start_rate``, then times ``e2e_growth``
   while sustained (divided by it while even the start rate fails), then
   ``e2e_search_steps`` bisections (geometric) between the highest sustained and the
   lowest failing rate; at most ``e2e_max_probes`` loads.
2. **Fractions** of that rate (``e2e_fractions``, e.g. 25/50/75 %), ``e2e_repeats``
   sessions for ours, one for the baselines: latency where the system has headroom, on
   whatever machine this runs.
3. For ``ours-otel`` only: ``e2e_target_runs`` loads at ``e2e_target_rate`` (100
   events/s), spread over two sessions, with idle gaps between them (receivers go idle
   between bursts, as in production); the target is on the latest event of all of them.
"""

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from bench.loadgen import Spec
from bench.support import Settings, latency_summary, ratio, start_emulator, summarize, target
from bench.support import wait_until as poll_until
from bench.systems import (
    Context,
    CpuSampler,
    Service,
    run_load,
    sink_requests,
    start_consumer,
    start_producer,
    start_sink,
)
from bench.taskqueues import done_count, done_pairs, queue_system
from consumer.stores.schema import audit_events

SYSTEMS = ("ours", "ours-otel", "celery", "arq")
LABELS = {
    "ours": "producer + consumer, telemetry off",
    "ours-otel": "producer + consumer, shipped telemetry (OTLP)",
    "celery": "Celery, Redis broker, worker at defaults",
    "arq": "ARQ, Redis, worker at defaults (polls every 0.5 s)",
}
SHIPPED = "ours-otel"
CATCH_UP_LIMIT = 12.0
"""Seconds a session gets after a load to handle what it accepted."""
SUSTAINED_FRACTION = 0.97
MAX_DRAIN_SECONDS = 2.0
IDLE_BETWEEN_TARGET_RUNS = 2.0
"""Seconds of no load between two runs at the target rate (receivers go idle)."""
TARGET_LATEST_MS = 250.0
TARGET_P99_AT_HALF_MS = 50.0


def steps(settings: Settings) -> int:
    search = 4 + settings.e2e_search_steps
    fractions = len(settings.e2e_fractions)
    ours = 2 * (search + fractions * settings.e2e_repeats)
    baselines = 2 * (search + fractions)
    return ours + baselines + settings.e2e_target_runs


def _unix(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


@dataclass
class _Session:
    """A started system: where to send load, how to read what it handled."""

    service: Service
    pids: dict[str, int]
    handled: Callable[[], Awaitable[int]]
    pairs: Callable[[], Awaitable[list[tuple[float, float]]]]
    sink: Service | None = None
    groups: dict[str, Callable[[], list[psutil.Process]]] = field(default_factory=dict)
    """Processes counted together for CPU (a worker and its children)."""
    accepted: int = 0
    dirty: bool = False
    loads: int = field(default=0)


@asynccontextmanager
async def _ours(ctx: Context, workdir: Path, telemetry: bool) -> AsyncIterator[_Session]:
    store_url = f"sqlite+aiosqlite:///{workdir / 'consumer.db'}"
    async with AsyncExitStack() as stack:
        emulator = start_emulator(workdir)
        stack.callback(emulator.stop)
        pids = {"emulator": emulator.pid}
        endpoint = None
        sink = None
        if telemetry:
            sink = start_sink(workdir)
            stack.callback(sink.stop)
            pids["otlp-sink"] = sink.pid
            endpoint = sink.base_url
        consumer = start_consumer(
            workdir, emulator.connection_string, store_url, otlp_endpoint=endpoint
        )
        stack.callback(consumer.stop)
        producer = start_producer(
            workdir,
            emulator.connection_string,
            f"sqlite+aiosqlite:///{workdir / 'outbox.db'}",
            otlp_endpoint=endpoint,
        )
        stack.callback(producer.stop)
        pids |= {"producer": producer.pid, "consumer": consumer.pid}
        engine = create_async_engine(store_url)
        stack.push_async_callback(engine.dispose)

        async def handled() -> int:
            async with engine.connect() as connection:
                count = await connection.scalar(select(func.count()).select_from(audit_events))
            return int(count or 0)

        async def pairs() -> list[tuple[float, float]]:
            async with engine.connect() as connection:
                rows = (
                    await connection.execute(
                        select(audit_events.c.accepted_at, audit_events.c.recorded_at)
                    )
                ).all()
            return [(_unix(a), _unix(r)) for a, r in rows]

        yield _Session(producer, pids, handled, pairs, sink)


@asynccontextmanager
async def _queues(workdir: Path, kind: str) -> AsyncIterator[_Session]:
    async with queue_system(workdir, kind, worker=True) as system:
        queue = system.queue

        async def handled() -> int:
            return await done_count(queue)

        async def pairs() -> list[tuple[float, float]]:
            return await done_pairs(queue)

        groups = {f"{kind}-worker": system.worker_processes}
        yield _Session(system.app, system.pids(), handled, pairs, groups=groups)


def _session(ctx: Context, system: str) -> Any:
    workdir = ctx.new_dir(f"e2e-{system}")
    if system in ("ours", "ours-otel"):
        return _ours(ctx, workdir, telemetry=system == SHIPPED)
    return _queues(workdir, system)


async def _load(ctx: Context, session: _Session, rate: float, label: str) -> dict[str, Any]:
    """One open-loop load on a session, then wait for it to catch up; returns the run."""
    settings = ctx.settings
    workdir = ctx.new_dir(f"e2e-load-{rate:.0f}")
    sampler = CpuSampler(session.pids)
    for name, lister in session.groups.items():
        sampler.add_group(name, lister)
    spec = Spec(
        host="127.0.0.1",
        port=session.service.port,
        headers=session.service.headers,
        mode="open",
        rate=rate,
        concurrency=512,
        duration=settings.e2e_seconds,
        warmup=settings.e2e_warmup,
    )
    result = await run_load(ctx, workdir, spec, sampler, label)
    window_start = result["warmup_end_unix"]
    window_end = result["started_unix"] + settings.e2e_warmup + settings.e2e_seconds
    cpu = sampler.usage(window_start, window_end)
    cpu["loadgen"] = result["cpu_percent"]
    session.accepted += result["ok_total"]
    session.loads += 1
    expected = session.accepted

    async def caught_up() -> bool:
        sampler.sample()
        done = await session.handled()
        ctx.reporter.detail(f"{label}: handled {done}/{expected}")
        return done >= expected

    finished = await poll_until(caught_up, within=CATCH_UP_LIMIT, interval=0.25)
    session.dirty = not finished
    pairs = [(a, d) for a, d in await session.pairs() if a >= result["started_unix"]]
    latencies = [d - a for a, d in pairs if window_start <= a <= window_end]
    handled_in_window = sum(1 for _, d in pairs if window_start <= d <= window_end)
    last = max((d for _, d in pairs), default=math.nan)
    run = {
        "offered_rate": rate,
        "http_rate": result["rate"],
        "http_p99_ms": result["latency_ms"]["p99"],
        "http_errors": result["errors"],
        "http_abandoned": result["abandoned"],
        "http_statuses": result["statuses"],
        "accepted": result["ok_total"],
        "handled": len(pairs),
        "processed_rate": handled_in_window / settings.e2e_seconds,
        "drain_seconds": max(0.0, last - window_end) if pairs else math.nan,
        "caught_up": finished,
        "latency": latency_summary(latencies),
        "cpu_percent": cpu,
    }
    if session.sink is not None:
        # Evidence that telemetry was exported, not dropped: requests so far, per signal.
        run["otlp_requests"] = await sink_requests(session.sink)
    run["sustained"] = bool(
        run["http_rate"] >= SUSTAINED_FRACTION * rate
        and not run["http_errors"]
        and not run["http_abandoned"]
        and run["processed_rate"] >= SUSTAINED_FRACTION * rate
        and finished
        and run["drain_seconds"] <= MAX_DRAIN_SECONDS
    )
    lat = run["latency"]
    ctx.reporter.log(
        f"{label}: handled {run['processed_rate']:.0f}/s, p50 {lat['p50_ms']:.0f} ms "
        f"p99 {lat['p99_ms']:.0f} ms max {lat['max_ms']:.0f} ms, "
        f"{'sustained' if run['sustained'] else 'NOT sustained'}"
    )
    return run


class _Sessions:
    """Keeps one session of a system open, replacing it when it could not catch up."""

    def __init__(self, ctx: Context, system: str) -> None:
        self._ctx = ctx
        self._system = system
        self._stack: AsyncExitStack | None = None
        self._session: _Session | None = None

    async def get(self) -> _Session:
        if self._session is not None and not self._session.dirty:
            return self._session
        await self.close()
        self._stack = AsyncExitStack()
        session: _Session = await self._stack.enter_async_context(_session(self._ctx, self._system))
        self._session = session
        return session

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._session = self._stack, None, None
            await stack.aclose()


async def _search(ctx: Context, system: str) -> tuple[float, float | None, list[dict[str, Any]]]:
    """Highest sustained rate, lowest failing rate (or ``None``), and every probe."""
    settings = ctx.settings
    sessions = _Sessions(ctx, system)
    probes: list[dict[str, Any]] = []
    low, high = 0.0, None
    rate = float(settings.e2e_start_rate)
    bisections = 0
    try:
        for _ in range(settings.e2e_max_probes):
            label = f"e2e {system}: search {rate:.0f}/s"
            with ctx.reporter.step(label):
                run = await _load(ctx, await sessions.get(), rate, label)
            probes.append(run)
            if run["sustained"]:
                low = max(low, rate)
            else:
                high = rate if high is None else min(high, rate)
                # A session that kept up only barely is not trusted for the next probe.
                await sessions.close()
            if high is None:
                rate *= settings.e2e_growth
                continue
            if low == 0.0:  # even the start rate failed: a slower or busier machine
                rate = float(max(1, round(rate / settings.e2e_growth)))
                continue
            if bisections >= settings.e2e_search_steps:
                break
            if high - low <= max(10.0, 0.1 * high):
                break
            bisections += 1
            rate = float(round(math.sqrt(low * high) / 10) * 10)
    finally:
        await sessions.close()
    return low, high, probes


async def _fractions(ctx: Context, system: str, highest: float, repeats: int) -> dict[str, Any]:
    settings = ctx.settings
    runs: dict[str, list[dict[str, Any]]] = {f"{f:g}": [] for f in settings.e2e_fractions}
    if highest <= 0:
        return {}
    for repeat in range(repeats):
        sessions = _Sessions(ctx, system)
        try:
            for fraction in settings.e2e_fractions:
                rate = max(1.0, round(highest * fraction))
                label = (
                    f"e2e {system}: {fraction * 100:.0f} % = {rate:.0f}/s "
                    f"(repeat {repeat + 1}/{repeats})"
                )
                with ctx.reporter.step(label):
                    run = await _load(ctx, await sessions.get(), rate, label)
                runs[f"{fraction:g}"].append(run)
        finally:
            await sessions.close()
    return {key: _aggregate(rs) for key, rs in runs.items() if rs}


async def _target_runs(ctx: Context) -> list[dict[str, Any]]:
    settings = ctx.settings
    count = settings.e2e_target_runs
    runs: list[dict[str, Any]] = []
    per_session = math.ceil(count / 2)
    while len(runs) < count:
        sessions = _Sessions(ctx, SHIPPED)
        try:
            for _ in range(min(per_session, count - len(runs))):
                label = f"e2e {SHIPPED}: {settings.e2e_target_rate}/s run {len(runs) + 1}/{count}"
                with ctx.reporter.step(label):
                    session = await sessions.get()
                    if session.loads:
                        await asyncio.sleep(IDLE_BETWEEN_TARGET_RUNS)
                    runs.append(await _load(ctx, session, float(settings.e2e_target_rate), label))
        finally:
            await sessions.close()
    return runs


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    sustained = sum(1 for r in runs if r["sustained"])
    return {
        "offered_rate": summarize([r["offered_rate"] for r in runs]),
        "runs": runs,
        "processed_rate": summarize([r["processed_rate"] for r in runs]),
        "http_rate": summarize([r["http_rate"] for r in runs]),
        "p50_ms": summarize([r["latency"]["p50_ms"] for r in runs]),
        "p95_ms": summarize([r["latency"]["p95_ms"] for r in runs]),
        "p99_ms": summarize([r["latency"]["p99_ms"] for r in runs]),
        "max_ms": summarize([r["latency"]["max_ms"] for r in runs]),
        "sustained_runs": f"{sustained}/{len(runs)}",
    }


async def run(ctx: Context) -> dict[str, Any]:
    settings = ctx.settings
    systems: dict[str, dict[str, Any]] = {}
    for system in SYSTEMS:
        low, high, probes = await _search(ctx, system)
        repeats = settings.e2e_repeats if system in ("ours", SHIPPED) else 1
        systems[system] = {
            "label": LABELS[system],
            "highest_sustained_rate": low,
            "lowest_failing_rate": high,
            "search": probes,
            "fractions": await _fractions(ctx, system, low, repeats),
        }
    target_runs = await _target_runs(ctx)
    systems[SHIPPED]["target_rate"] = {
        "rate": settings.e2e_target_rate,
        **(_aggregate(target_runs) if target_runs else {}),
    }
    latest = max((r["latency"]["max_ms"] for r in target_runs), default=math.nan)
    half = systems[SHIPPED]["fractions"].get("0.5")
    p99_half = half["p99_ms"]["median"] if half else math.nan
    highest = systems[SHIPPED]["highest_sustained_rate"]
    targets = [
        target(
            f"end to end at {settings.e2e_target_rate} events/s, {len(target_runs)} runs: "
            "latest event",
            latest,
            TARGET_LATEST_MS,
            higher_is_better=False,
            unit="ms",
            detail="shipped telemetry; accepted -> recorded by the audit handler",
        ),
        target(
            "end to end at half the highest sustained rate: p99",
            p99_half,
            TARGET_P99_AT_HALF_MS,
            higher_is_better=False,
            unit="ms",
            detail=f"shipped telemetry; half of {highest:.0f} events/s",
        ),
    ]
    ratios = {
        f"{SHIPPED}/{other} highest sustained rate": {
            "value": ratio(highest, systems[other]["highest_sustained_rate"]),
            "paired": [],
        }
        for other in SYSTEMS
        if other != SHIPPED
    }
    return {
        "settings": {
            "seconds": settings.e2e_seconds,
            "warmup": settings.e2e_warmup,
            "start_rate": settings.e2e_start_rate,
            "growth": settings.e2e_growth,
            "search_steps": settings.e2e_search_steps,
            "fractions": list(settings.e2e_fractions),
            "repeats": settings.e2e_repeats,
            "target_rate": settings.e2e_target_rate,
            "target_runs": settings.e2e_target_runs,
        },
        "systems": systems,
        "ratios": ratios,
        "targets": targets,
        "checked_at": time.time(),
    }
