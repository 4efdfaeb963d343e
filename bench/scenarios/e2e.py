"""Scenario 4 -- end to end: HTTP -> outbox -> queue -> handler at constant arrival rates.

Per run a fresh emulator, ``python -m consumer`` (audit store on SQLite, as ``make run``)
and ``python -m producer`` (outbox on SQLite). :mod:`bench.loadgen` in ``open`` mode
starts ``POST /v1/audit-events`` requests at a constant rate whatever the answers. After
the load, the consumer gets up to 12 s to catch up.

Latency of an event = the consumer's ``audit_events.recorded_at`` (the handler's
transaction) - ``accepted_at`` (the envelope's ``time``, stamped by the producer when it
accepted the request); both are this machine's clock. Only events accepted after the
warm-up count.

A rate is *sustained* when the producer answered >= 97 % of the offered requests with 202
and no errors, the consumer recorded >= 97 % of the offered rate during the window, and
it had caught up within 2 s after the load stopped (no growing backlog). After the fixed
rates, a few runs bisect between the highest sustained and the lowest failing rate.
"""

import math
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from bench.loadgen import Spec
from bench.support import Settings, latency_summary, managed, start_emulator, summarize, target
from bench.support import wait_until as poll_until
from bench.systems import Context, CpuSampler, run_load, start_consumer, start_producer
from consumer.stores.schema import audit_events

CATCH_UP_LIMIT = 12.0
SUSTAINED_FRACTION = 0.97
MAX_DRAIN_SECONDS = 2.0
TARGET_RATE = 300


def steps(settings: Settings) -> int:
    return settings.repeats * len(settings.e2e_rates) + settings.e2e_search_steps


def _unix(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


async def _once(ctx: Context, rate: float, label: str) -> dict[str, Any]:
    settings = ctx.settings
    workdir = ctx.new_dir(f"e2e-{rate:.0f}")
    store_url = f"sqlite+aiosqlite:///{workdir / 'consumer.db'}"
    emulator = start_emulator(workdir)
    with managed(emulator):
        consumer = start_consumer(workdir, emulator.connection_string, store_url)
        with managed(consumer):
            producer = start_producer(
                workdir, emulator.connection_string, f"sqlite+aiosqlite:///{workdir / 'outbox.db'}"
            )
            with managed(producer):
                sampler = CpuSampler(
                    {"producer": producer.pid, "consumer": consumer.pid, "emulator": emulator.pid}
                )
                spec = Spec(
                    host="127.0.0.1",
                    port=producer.port,
                    headers=producer.headers,
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
                accepted = result["ok_total"]
                engine = create_async_engine(store_url)
                try:

                    async def caught_up() -> bool:
                        sampler.sample()
                        async with engine.connect() as connection:
                            done = await connection.scalar(
                                select(func.count()).select_from(audit_events)
                            )
                        ctx.reporter.detail(f"{label}: consumer {done}/{accepted}")
                        finished: bool = int(done or 0) >= accepted
                        return finished

                    await poll_until(caught_up, within=CATCH_UP_LIMIT, interval=0.25)
                    async with engine.connect() as connection:
                        rows = (
                            await connection.execute(
                                select(audit_events.c.accepted_at, audit_events.c.recorded_at)
                            )
                        ).all()
                finally:
                    await engine.dispose()
    pairs = [(_unix(a), _unix(r)) for a, r in rows]
    latencies = [r - a for a, r in pairs if window_start <= a <= window_end]
    processed_in_window = sum(1 for _, r in pairs if window_start <= r <= window_end)
    processed_by_end = sum(1 for _, r in pairs if r <= window_end)
    last = max((r for _, r in pairs), default=math.nan)
    duration = settings.e2e_seconds
    run = {
        "offered_rate": rate,
        "http_rate": result["rate"],
        "http_p99_ms": result["latency_ms"]["p99"],
        "http_errors": result["errors"],
        "http_abandoned": result["abandoned"],
        "http_statuses": result["statuses"],
        "accepted": accepted,
        "processed": len(pairs),
        "processed_rate": processed_in_window / duration,
        "backlog_at_end": accepted - processed_by_end,
        "drain_seconds": max(0.0, last - window_end) if pairs else math.nan,
        "latency": latency_summary(latencies),
        "cpu_percent": cpu,
    }
    run["sustained"] = bool(
        run["http_rate"] >= SUSTAINED_FRACTION * rate
        and not run["http_errors"]
        and not run["http_abandoned"]
        and run["processed_rate"] >= SUSTAINED_FRACTION * rate
        and run["processed"] >= accepted
        and run["drain_seconds"] <= MAX_DRAIN_SECONDS
    )
    lat = run["latency"]
    ctx.reporter.log(
        f"e2e {rate:.0f}/s: processed {run['processed_rate']:.0f}/s, "
        f"p50 {lat['p50_ms']:.0f} ms p99 {lat['p99_ms']:.0f} ms, "
        f"{'sustained' if run['sustained'] else 'NOT sustained'}"
    )
    return run


def _aggregate(rate: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    sustained = sum(1 for r in runs if r["sustained"])
    return {
        "offered_rate": rate,
        "runs": runs,
        "processed_rate": summarize([r["processed_rate"] for r in runs]),
        "http_rate": summarize([r["http_rate"] for r in runs]),
        "p50_ms": summarize([r["latency"]["p50_ms"] for r in runs]),
        "p95_ms": summarize([r["latency"]["p95_ms"] for r in runs]),
        "p99_ms": summarize([r["latency"]["p99_ms"] for r in runs]),
        "backlog_at_end": summarize([r["backlog_at_end"] for r in runs]),
        "sustained": sustained * 2 > len(runs),
        "sustained_runs": f"{sustained}/{len(runs)}",
    }


async def run(ctx: Context) -> dict[str, Any]:
    settings = ctx.settings
    runs: dict[float, list[dict[str, Any]]] = {}
    for repeat in range(settings.repeats):
        for rate in settings.e2e_rates:
            label = f"e2e: {rate}/s (repeat {repeat + 1}/{settings.repeats})"
            with ctx.reporter.step(label):
                runs.setdefault(float(rate), []).append(await _once(ctx, float(rate), label))
    rates = {r: _aggregate(r, results) for r, results in runs.items()}

    def bounds() -> tuple[float, float | None]:
        ok = [r for r, a in rates.items() if a["sustained"]]
        low = max(ok, default=0.0)
        failing = [r for r, a in rates.items() if not a["sustained"] and r > low]
        return low, min(failing, default=None)

    for step in range(settings.e2e_search_steps):
        low, high = bounds()
        if high is None:
            probe = low * 2
        elif high - low <= max(10.0, 0.1 * high):
            ctx.reporter.log("e2e: search interval small enough; skipping the rest")
            break
        else:
            probe = round(math.sqrt(max(low, high / 4) * high) / 10) * 10
        label = f"e2e search: {probe:.0f}/s ({step + 1}/{settings.e2e_search_steps})"
        with ctx.reporter.step(label):
            result = await _once(ctx, probe, label)
        runs.setdefault(probe, []).append(result)
        rates[probe] = _aggregate(probe, runs[probe])
    low, high = bounds()
    at_target = rates.get(float(TARGET_RATE))
    p99 = at_target["p99_ms"]["median"] if at_target else math.nan
    targets = [
        target(
            f"end-to-end p99 latency at {TARGET_RATE} events/s",
            p99,
            100.0,
            higher_is_better=False,
            unit="ms",
            detail="accepted -> recorded by the audit handler",
        )
    ]
    return {
        "settings": {
            "rates": list(settings.e2e_rates),
            "seconds": settings.e2e_seconds,
            "warmup": settings.e2e_warmup,
            "repeats": settings.repeats,
            "search_steps": settings.e2e_search_steps,
        },
        "rates": {f"{r:.0f}": a for r, a in sorted(rates.items())},
        "highest_sustained_rate": low,
        "lowest_failing_rate": high,
        "targets": targets,
        "checked_at": time.time(),
    }
