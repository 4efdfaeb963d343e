"""Scenario 1 -- the accept path: ``POST /v1/audit-events`` against its alternatives.

Variants, each a fresh process (and emulator, and database) per repeat:

* ``outbox-sqlite`` / ``outbox-postgres``: ``python -m producer`` with its durable outbox
  on SQLite (a file in the run directory) or PostgreSQL (a fresh database), telemetry off.
  The producer also publishes what it accepts (fast path and relay) during the run, as in
  production.
* ``outbox-sqlite-otel``: the same on SQLite with the shipped telemetry defaults, exporting
  OTLP/HTTP to :mod:`bench.otlp_sink` on loopback (``bench.systems.telemetry_env``).
* ``bare``: a FastAPI endpoint validating the same body (``AuditEvent``), answering 202.
* ``direct``: a long-lived SDK sender (pooled), one awaited send per request, no outbox.
* ``celery`` / ``arq``: enqueue a job on the local Redis (no worker running: the enqueue
  cost alone; :mod:`bench.taskqueues`).
* ``tutorial``: ``BackgroundTasks`` + a ``ServiceBusClient`` per message.

Closed-loop load at each concurrency level from :mod:`bench.loadgen` (its own process).
For the producer and the tutorial the messages that reached Service Bus during the run
are counted too: the tutorial answers 202 long before its background sends are done, so
its *delivered* rate (messages on the queue per second) is the figure that counts.
"""

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from statistics import median
from typing import Any

from bench.loadgen import Spec
from bench.support import (
    Settings,
    postgres_database,
    ratio,
    start_emulator,
    summarize,
    target,
    wait_until,
)
from bench.systems import (
    Context,
    CpuSampler,
    Service,
    get_json,
    postgres_processes,
    run_load,
    sink_requests,
    start_app,
    start_producer,
    start_sink,
)
from bench.taskqueues import queue_system

VARIANTS = (
    "outbox-sqlite",
    "outbox-sqlite-otel",
    "outbox-postgres",
    "bare",
    "direct",
    "celery",
    "arq",
    "tutorial",
)
LABELS = {
    "outbox-sqlite": "producer, outbox on SQLite, telemetry off",
    "outbox-sqlite-otel": "producer, outbox on SQLite, shipped telemetry (OTLP)",
    "outbox-postgres": "producer, outbox on PostgreSQL, telemetry off",
    "bare": "bare FastAPI endpoint (validate, 202)",
    "direct": "direct send: pooled long-lived SDK senders, no outbox",
    "celery": "Celery delay(), Redis broker",
    "arq": "ARQ enqueue_job, Redis",
    "tutorial": "tutorial: BackgroundTasks + client per message",
}
PRODUCERS = ("outbox-sqlite", "outbox-sqlite-otel", "outbox-postgres")
BASELINES = ("bare", "direct", "celery", "arq", "tutorial")
SHIPPED = "outbox-sqlite-otel"
"""The producer as a deployment runs it: the variant the targets are about."""
DRAIN_LIMIT = {"tutorial": 10.0}
"""Seconds to wait after the load for background publishing to catch up (default 60)."""

Counters = Callable[[], Awaitable[dict[str, int]]]


def steps(settings: Settings) -> int:
    return 1 + settings.repeats * len(VARIANTS)


@dataclass
class _System:
    service: Service
    pids: dict[str, int]
    counters: Counters | None
    postgres: bool
    sink: Service | None = None


@asynccontextmanager
async def _start(ctx: Context, variant: str) -> AsyncIterator[_System]:
    workdir = ctx.new_dir(f"accept-{variant}")
    async with AsyncExitStack() as stack:
        if variant == "bare":
            bare = start_app(workdir, "bare")
            stack.callback(bare.stop)
            yield _System(bare, {"app": bare.pid}, None, False)
            return
        if variant in ("celery", "arq"):
            queues = await stack.enter_async_context(queue_system(workdir, variant, worker=False))
            yield _System(queues.app, {"app": queues.app.pid}, None, False)
            return
        emulator = start_emulator(workdir)
        stack.callback(emulator.stop)
        if variant in ("tutorial", "direct"):
            app = start_app(
                workdir,
                variant,
                {"BENCH_CONNECTION_STRING": emulator.connection_string, "BENCH_QUEUE": "audit"},
            )
            stack.callback(app.stop)

            async def tutorial_counters() -> dict[str, int]:
                data = await get_json(f"{app.base_url}/stats")
                return {
                    "accepted": data["accepted"],
                    "published": data["sent"],
                    "failed": data["failed"],
                }

            yield _System(app, {"app": app.pid, "emulator": emulator.pid}, tutorial_counters, False)
            return
        if variant == "outbox-postgres":
            url = await stack.enter_async_context(postgres_database("accept"))
        else:
            url = f"sqlite+aiosqlite:///{workdir / 'outbox.db'}"
        pids = {"emulator": emulator.pid}
        endpoint = None
        sink = None
        if variant == SHIPPED:
            sink = start_sink(workdir)
            stack.callback(sink.stop)
            pids["otlp-sink"] = sink.pid
            endpoint = sink.base_url
        producer = start_producer(workdir, emulator.connection_string, url, otlp_endpoint=endpoint)
        stack.callback(producer.stop)
        pids["producer"] = producer.pid

        async def producer_counters() -> dict[str, int]:
            data = await get_json(f"{producer.base_url}/v1/stats", producer.headers)
            return {
                "accepted": data["accepted"],
                "published": data["published"],
                "failed": data["publish_failed"] + data["unpublishable"],
                "commit_groups": data["commit_groups"],
                "grouped_events": data["grouped_events"],
            }

        yield _System(producer, pids, producer_counters, variant == "outbox-postgres", sink)


async def _measure(
    ctx: Context, system: _System, variant: str, concurrency: int, label: str
) -> dict[str, Any]:
    settings = ctx.settings
    workdir = ctx.new_dir(f"load-{variant}-{concurrency}")
    before = await system.counters() if system.counters else None
    sampler = CpuSampler(system.pids)
    if system.postgres:
        sampler.add_group("postgres", postgres_processes)
    spec = Spec(
        host="127.0.0.1",
        port=system.service.port,
        headers=system.service.headers,
        mode="closed",
        concurrency=concurrency,
        duration=settings.accept_seconds,
        warmup=settings.accept_warmup,
    )
    result = await run_load(ctx, workdir, spec, sampler, label)
    cpu = sampler.usage(result["warmup_end_unix"], result["ended_unix"])
    cpu["loadgen"] = result["cpu_percent"]
    latency = result["latency_ms"]
    run: dict[str, Any] = {
        "rate": result["rate"],
        "p50_ms": latency["p50"],
        "p95_ms": latency["p95"],
        "p99_ms": latency["p99"],
        "max_ms": latency["max"],
        "statuses": result["statuses"],
        "errors": result["errors"],
        "cpu_percent": cpu,
    }
    if system.sink is not None:
        # Evidence that telemetry was exported, not dropped: requests so far, per signal.
        run["otlp_requests"] = await sink_requests(system.sink)
    server = "producer" if "producer" in cpu else "app"
    # CPU milliseconds the server process spent per accepted request (percent of a core
    # over the window / requests per second).
    run["server_cpu_ms_per_request"] = ratio(cpu.get(server, math.nan) * 10, result["rate"])
    if system.counters is not None and before is not None:
        counters = system.counters
        after = await counters()
        published = after["published"] - before["published"]
        run["publish_rate"] = published / result["elapsed_seconds"]
        run["effective_rate"] = min(run["rate"], run["publish_rate"])
        run["backlog_at_end"] = after["accepted"] - after["published"] - after["failed"]
        if "commit_groups" in after:
            groups = after["commit_groups"] - before["commit_groups"]
            grouped = after["grouped_events"] - before["grouped_events"]
            run["commit_group_mean"] = grouped / groups if groups else 0.0
        limit = DRAIN_LIMIT.get(variant, 60.0)

        async def caught_up() -> bool:
            now = await counters()
            return now["accepted"] <= now["published"] + now["failed"]

        ctx.reporter.detail(f"{label}: waiting for publishing to catch up (<= {limit:.0f} s)")
        t0 = time.monotonic()
        await wait_until(caught_up, within=limit, interval=0.25)
        run["drain_seconds"] = time.monotonic() - t0
        final = await counters()
        run["unpublished_after_drain"] = final["accepted"] - final["published"] - final["failed"]
        run["publish_failed"] = final["failed"]
    ctx.reporter.log(
        f"accept {variant} c={concurrency}: {run['rate']:.0f} req/s, p99 {run['p99_ms']:.0f} ms"
        + (f", published {run['publish_rate']:.0f}/s during load" if "publish_rate" in run else "")
    )
    return run


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs}
    for key in (
        "rate",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "publish_rate",
        "effective_rate",
        "commit_group_mean",
        "server_cpu_ms_per_request",
    ):
        values = [r[key] for r in runs if key in r]
        if values:
            out[key] = summarize(values)
    names = {name for r in runs for name in r["cpu_percent"]}
    out["cpu_percent"] = {
        name: median([r["cpu_percent"][name] for r in runs if name in r["cpu_percent"]])
        for name in sorted(names)
    }
    return out


def _paired(
    numerators: list[dict[str, Any]], denominators: list[dict[str, Any]], num: str, den: str
) -> list[float]:
    return [ratio(n[num], d[den]) for n, d in zip(numerators, denominators, strict=False)]


async def run(ctx: Context) -> dict[str, Any]:
    settings = ctx.settings
    reporter = ctx.reporter
    ceiling: dict[str, Any] = {}
    with reporter.step("accept: load generator against a null server"):
        workdir = ctx.new_dir("accept-null")
        null = start_app(workdir, "null")
        try:
            for concurrency in settings.accept_concurrency:
                spec = Spec(
                    host="127.0.0.1",
                    port=null.port,
                    concurrency=concurrency,
                    duration=settings.accept_seconds,
                    warmup=settings.accept_warmup,
                )
                sampler = CpuSampler({"null-server": null.pid})
                result = await run_load(ctx, workdir, spec, sampler, f"null c={concurrency}")
                ceiling[str(concurrency)] = {
                    "rate": result["rate"],
                    "loadgen_cpu_percent": result["cpu_percent"],
                    "server_cpu_percent": sampler.usage(
                        result["warmup_end_unix"], result["ended_unix"]
                    )["null-server"],
                    "p99_ms": result["latency_ms"]["p99"],
                }
                reporter.log(
                    f"load generator vs null server c={concurrency}: {result['rate']:.0f} req/s "
                    f"(load generator CPU {result['cpu_percent']:.0f} %)"
                )
        finally:
            null.stop()

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        v: {str(c): [] for c in settings.accept_concurrency} for v in VARIANTS
    }
    for repeat in range(settings.repeats):
        for variant in VARIANTS:
            with reporter.step(f"accept: {variant} (repeat {repeat + 1}/{settings.repeats})"):
                async with _start(ctx, variant) as system:
                    for concurrency in settings.accept_concurrency:
                        label = f"{variant} c={concurrency}"
                        runs[variant][str(concurrency)].append(
                            await _measure(ctx, system, variant, concurrency, label)
                        )

    variants: dict[str, dict[str, Any]] = {
        v: {"label": LABELS[v], "by_concurrency": {c: _aggregate(r) for c, r in by_c.items()}}
        for v, by_c in runs.items()
    }
    ratios: dict[str, Any] = {}

    def rate(variant: str, c: str) -> float:
        value: float = variants[variant]["by_concurrency"][c]["rate"]["median"]
        return value

    for concurrency in settings.accept_concurrency:
        c = str(concurrency)
        for variant in PRODUCERS:
            for baseline in BASELINES:
                ratios[f"{variant}/{baseline} c={c}"] = {
                    "value": ratio(rate(variant, c), rate(baseline, c)),
                    "paired": _paired(runs[variant][c], runs[baseline][c], "rate", "rate"),
                }
        ratios[f"{SHIPPED}/outbox-sqlite c={c}"] = {
            "value": ratio(rate(SHIPPED, c), rate("outbox-sqlite", c)),
            "paired": _paired(runs[SHIPPED][c], runs["outbox-sqlite"][c], "rate", "rate"),
        }
    return {
        "settings": {
            "concurrency": list(settings.accept_concurrency),
            "seconds": settings.accept_seconds,
            "warmup": settings.accept_warmup,
            "repeats": settings.repeats,
        },
        "loadgen_ceiling": ceiling,
        "variants": variants,
        "ratios": ratios,
        "targets": _targets(variants, runs, settings.accept_concurrency),
    }


def _targets(
    variants: dict[str, dict[str, Any]],
    runs: dict[str, dict[str, list[dict[str, Any]]]],
    levels: tuple[int, ...],
) -> list[dict[str, Any]]:
    """The issue's accept-path targets, for the concurrency levels this run measured."""

    def median_rate(variant: str, c: int) -> float:
        value: float = variants[variant]["by_concurrency"][str(c)]["rate"]["median"]
        return value

    shipped = "accept, shipped telemetry"
    targets = []
    for c in levels:
        if c in (8, 32):
            targets.append(
                target(
                    f"{shipped} / direct send (c={c})",
                    ratio(median_rate(SHIPPED, c), median_rate("direct", c)),
                    1.0,
                    detail="req/s; direct send has no outbox: an accepted event can be lost",
                )
            )
    for c in levels:
        if c == 32:
            targets.append(
                target(
                    f"{shipped} / ARQ enqueue (c={c})",
                    ratio(median_rate(SHIPPED, c), median_rate("arq", c)),
                    1.0,
                    detail="req/s; ARQ on the local Redis, no worker running",
                )
            )
            targets.append(
                target(
                    f"accept throughput lost to telemetry (c={c})",
                    1 - ratio(median_rate(SHIPPED, c), median_rate("outbox-sqlite", c)),
                    0.20,
                    higher_is_better=False,
                    unit="",
                    detail="1 - (shipped telemetry / telemetry off), producer on SQLite",
                )
            )
        if c == 8:
            tutorial = variants["tutorial"]["by_concurrency"][str(c)]
            left = median(r.get("unpublished_after_drain", 0) for r in runs["tutorial"][str(c)])
            targets.append(
                target(
                    f"{shipped} / tutorial pattern (c={c})",
                    ratio(median_rate(SHIPPED, c), median_rate("tutorial", c)),
                    20.0,
                    detail=f"req/s; the tutorial put {tutorial['publish_rate']['median']:.0f} "
                    f"msg/s on the queue during the load and had {left:.0f} unsent 10 s later",
                )
            )
    return targets
