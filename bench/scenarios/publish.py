"""Scenario 2 -- publishing: the outbox relay draining a backlog vs raw batched SDK sends.

* ``relay-sqlite`` / ``relay-postgres``: ``N`` audit events are inserted into a fresh outbox
  as ``accepted`` rows (what a Service Bus outage leaves behind), then ``python -m
  producer`` starts and its relay publishes them. Measured until the outbox is empty; the
  rate is taken from the rows' own ``finished_at`` stamps (first to last published batch,
  excluding the first batch), so the producer's start-up does not count. The wall time
  from spawning the producer to an empty outbox is reported too.
* ``raw-sdk``: :mod:`bench.sbtools` ``send``: the same ``N`` messages, prepared up front, in
  full ``ServiceBusMessageBatch`` es over one long-lived sender.

Each run gets a fresh emulator (queue ``audit`` of ``config/servicebus.json``).
"""

import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.support import (
    Settings,
    audit_envelopes,
    managed,
    postgres_database,
    ratio,
    read_json,
    start_emulator,
    summarize,
    target,
    wait_process,
    wait_until,
)
from bench.systems import Context, CpuSampler, postgres_processes, start_producer
from producer.outbox.database import create_outbox_engine, run_migrations
from producer.outbox.models import OutboxStatus, outbox
from producer.outbox.records import NewEvent
from producer.outbox.repository import OutboxRepository
from tools.processes import ManagedProcess

VARIANTS = ("relay-sqlite", "relay-postgres", "raw-sdk")
LABELS = {
    "relay-sqlite": "outbox relay, SQLite",
    "relay-postgres": "outbox relay, PostgreSQL",
    "raw-sdk": "raw SDK, full batches, one sender",
}


def steps(settings: Settings) -> int:
    return settings.repeats * len(VARIANTS)


async def prefill_outbox(url: str, count: int, queue: str = "audit") -> float:
    """Migrate the outbox at ``url`` and insert ``count`` pending audit events; seconds."""
    engine = create_outbox_engine(url)
    try:
        await run_migrations(engine)
        repository = OutboxRepository(engine, lease=timedelta(seconds=60))
        rows = [
            NewEvent(
                id=e.id,
                event_type=e.type,
                queue=queue,
                source=e.source,
                body=e.model_dump_json(exclude_none=True),
            )
            for e in audit_envelopes(count)
        ]
        started = time.perf_counter()
        now = datetime.now(UTC)
        for start in range(0, len(rows), 2000):
            async with engine.begin() as connection:
                await repository.insert(connection, rows[start : start + 2000], claim=None, now=now)
        return time.perf_counter() - started
    finally:
        await engine.dispose()


async def _pending(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count())
            .select_from(outbox)
            .where(outbox.c.status == OutboxStatus.ACCEPTED.value)
        )
    return int(count or 0)


async def _published_span(engine: AsyncEngine) -> tuple[datetime, datetime, int, int]:
    """First and last ``finished_at`` of published rows, rows in the first batch, total."""
    published = outbox.c.status == OutboxStatus.PUBLISHED.value
    async with engine.connect() as connection:
        first, last, total = (
            await connection.execute(
                select(
                    func.min(outbox.c.finished_at), func.max(outbox.c.finished_at), func.count()
                ).where(published)
            )
        ).one()
        cohort = await connection.scalar(
            select(func.count()).where(published, outbox.c.finished_at == first)
        )
    return first, last, int(cohort or 0), int(total)


async def _relay(ctx: Context, variant: str, label: str) -> dict[str, Any]:
    count = ctx.settings.publish_events
    workdir = ctx.new_dir(f"publish-{variant}")
    async with AsyncExitStack() as stack:
        if variant == "relay-postgres":
            url = await stack.enter_async_context(postgres_database("publish"))
        else:
            url = f"sqlite+aiosqlite:///{workdir / 'outbox.db'}"
        ctx.reporter.detail(f"{label}: inserting {count:,} pending rows")
        prefill_seconds = await prefill_outbox(url, count)
        emulator = start_emulator(workdir)
        stack.callback(emulator.stop)
        reader = create_async_engine(url)
        stack.push_async_callback(reader.dispose)
        spawned = time.perf_counter()
        producer = start_producer(workdir, emulator.connection_string, url, wait=False)
        stack.callback(producer.stop)
        sampler = CpuSampler({"producer": producer.pid, "emulator": emulator.pid})
        if variant == "relay-postgres":
            sampler.add_group("postgres", postgres_processes)
        remaining = count

        async def empty() -> bool:
            nonlocal remaining
            sampler.sample()
            if producer.process.process.poll() is not None:
                raise RuntimeError(f"producer exited; see {producer.process.log_path}")
            remaining = await _pending(reader)
            ctx.reporter.detail(f"{label}: {count - remaining:,}/{count:,} published")
            return remaining == 0

        drained = await wait_until(empty, within=600, interval=0.2)
        wall = time.perf_counter() - spawned
        first, last, cohort, total = await _published_span(reader)
    span = (last - first).total_seconds()
    cpu = sampler.usage(first.timestamp(), last.timestamp())
    rate = (total - cohort) / span if span > 0 else float("nan")
    ctx.reporter.log(f"publish {variant}: {rate:.0f} msg/s ({total:,} in {span:.1f} s)")
    return {
        "rate": rate,
        "published": total,
        "drained": drained,
        "relay_seconds": span,
        "wall_seconds_from_spawn": wall,
        "wall_rate_from_spawn": total / wall,
        "prefill_seconds": prefill_seconds,
        "cpu_percent": cpu,
    }


async def raw_send(
    ctx: Context,
    workdir: Any,
    connection_string: str,
    count: int,
    label: str,
    seed: int = 11,
    sampler: CpuSampler | None = None,
) -> dict[str, Any]:
    """Run ``bench.sbtools send`` as its own process; returns its result document."""
    out = workdir / f"send-{time.time_ns()}.json"
    process = ManagedProcess(
        "sbtools-send",
        "bench.sbtools",
        args=[
            *("send", "--queue", "audit", "--count", str(count)),
            *("--seed", str(seed), "--out", str(out)),
        ],
        env={"BENCH_CONNECTION_STRING": connection_string},
        log_dir=workdir,
    )
    started = time.monotonic()

    def poll() -> None:
        if sampler is not None:
            sampler.sample()
        ctx.reporter.detail(f"{label}: {time.monotonic() - started:.0f} s")

    await wait_process(process, within=600, on_poll=poll)
    return read_json(out)


async def _raw(ctx: Context, label: str) -> dict[str, Any]:
    count = ctx.settings.publish_events
    workdir = ctx.new_dir("publish-raw")
    emulator = start_emulator(workdir)
    with managed(emulator):
        sampler = CpuSampler({"emulator": emulator.pid})
        result = await raw_send(
            ctx, workdir, emulator.connection_string, count, label, sampler=sampler
        )
        cpu = sampler.usage(result["started_unix"], result["ended_unix"])
    cpu["sender"] = result["cpu_percent"]
    ctx.reporter.log(f"publish raw-sdk: {result['rate']:.0f} msg/s ({result['batches']} batches)")
    return {
        "rate": result["rate"],
        "published": result["count"],
        "batches": result["batches"],
        "seconds": result["seconds"],
        "cpu_percent": cpu,
    }


async def run(ctx: Context) -> dict[str, Any]:
    settings = ctx.settings
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for repeat in range(settings.repeats):
        for variant in VARIANTS:
            label = f"publish: {variant} (repeat {repeat + 1}/{settings.repeats})"
            with ctx.reporter.step(label):
                if variant == "raw-sdk":
                    runs[variant].append(await _raw(ctx, label))
                else:
                    runs[variant].append(await _relay(ctx, variant, label))
    variants: dict[str, Any] = {}
    for variant, results in runs.items():
        names = {n for r in results for n in r["cpu_percent"]}
        variants[variant] = {
            "label": LABELS[variant],
            "runs": results,
            "rate": summarize([r["rate"] for r in results]),
            "cpu_percent": {
                n: median([r["cpu_percent"][n] for r in results if n in r["cpu_percent"]])
                for n in sorted(names)
            },
        }
    raw = variants["raw-sdk"]["rate"]["median"]
    targets = [
        target(
            f"publish {v} / raw batched send",
            ratio(variants[v]["rate"]["median"], raw),
            1.0,
            detail=f"{settings.publish_events:,} messages",
        )
        for v in ("relay-sqlite", "relay-postgres")
    ]
    return {
        "settings": {"events": settings.publish_events, "repeats": settings.repeats},
        "variants": variants,
        "ratios": {
            f"{v}/raw-sdk": {
                "value": ratio(variants[v]["rate"]["median"], raw),
                "paired": [
                    ratio(a["rate"], b["rate"])
                    for a, b in zip(runs[v], runs["raw-sdk"], strict=False)
                ],
            }
            for v in ("relay-sqlite", "relay-postgres")
        },
        "targets": targets,
    }
