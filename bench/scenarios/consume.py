"""Scenario 3 -- consuming: the consumer runtime vs a raw SDK receive loop.

On one emulator per repeat (queue ``audit``), each run on a queue pre-filled with audit
events by :mod:`bench.sbtools` ``send``:

* ``raw-loop``: ``receive_messages(max_message_count=100)``, ``complete_message`` each.
* ``consumer-noop``: :mod:`bench.worker` (the consumer's ``Worker``: validation, lock
  renewal, retry ladder, settlement) with a handler that does nothing, at the consumer's
  default settings (concurrency 8, ``max_message_count`` 50, no prefetch).
* ``consumer-noop-wide``: the same with concurrency 100 and ``max_message_count`` 100
  (the raw loop's batch).
* ``consumer-noop-otel``: ``consumer-noop`` with the consumer's shipped telemetry,
  exporting OTLP/HTTP to :mod:`bench.otlp_sink` on loopback.
* ``io-<c>``: a handler awaiting ``asyncio.sleep(0.020)`` at concurrency ``c``; each run
  sized to last about ``io_seconds``. Scaling efficiency = rate / min(c / 0.020 s, the
  best no-op rate).
"""

import time
from pathlib import Path
from statistics import median
from typing import Any

from bench.scenarios.publish import raw_send
from bench.support import (
    EmulatorProcess,
    Settings,
    managed,
    ratio,
    read_json,
    start_emulator,
    summarize,
    target,
    wait_process,
)
from bench.systems import Context, CpuSampler, Service, start_sink
from tools.processes import ManagedProcess

HANDLER_SECONDS = 0.020
NOOP_VARIANTS = {
    "consumer-noop": {"concurrency": 8, "max_message_count": 50, "telemetry": False},
    "consumer-noop-wide": {"concurrency": 100, "max_message_count": 100, "telemetry": False},
    "consumer-noop-otel": {"concurrency": 8, "max_message_count": 50, "telemetry": True},
}
LABELS = {
    "raw-loop": "raw SDK loop (receive 100, complete each)",
    "consumer-noop": "consumer, no-op handler (defaults: concurrency 8, batch 50)",
    "consumer-noop-wide": "consumer, no-op handler (concurrency 100, batch 100)",
    "consumer-noop-otel": "consumer, no-op handler (defaults), shipped telemetry (OTLP)",
}
QUIET = ("consumer-noop", "consumer-noop-wide")
"""The no-op variants with telemetry off (I/O-bound runs have it off too)."""
IO_TARGET_UP_TO = 32
"""I/O-bound scaling has a target up to this concurrency; above it 2 cores are the limit."""


def steps(settings: Settings) -> int:
    return settings.repeats * (1 + len(NOOP_VARIANTS) + len(settings.io_concurrency))


async def _child(
    ctx: Context,
    workdir: Path,
    emulator: EmulatorProcess,
    module: str,
    args: list[str],
    label: str,
    sink: Service | None = None,
) -> dict[str, Any]:
    out = workdir / f"{module}-{time.time_ns()}.json"
    env = {"BENCH_CONNECTION_STRING": emulator.connection_string}
    pids = {"emulator": emulator.pid}
    if sink is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.base_url
        pids["otlp-sink"] = sink.pid
    process = ManagedProcess(
        module.rsplit(".", 1)[-1], module, args=[*args, "--out", str(out)], env=env, log_dir=workdir
    )
    sampler = CpuSampler(pids)
    started = time.monotonic()

    def poll() -> None:
        sampler.sample()
        ctx.reporter.detail(f"{label}: {time.monotonic() - started:.0f} s")

    await wait_process(process, within=900, on_poll=poll)
    result = read_json(out)
    if "started_unix" in result:
        cpu = sampler.usage(result["started_unix"], result["ended_unix"])
        cpu["client"] = result["cpu_percent"]
        result["cpu_percent"] = cpu
    return result


async def _fill(
    ctx: Context, workdir: Path, emulator: EmulatorProcess, count: int, label: str, seed: int
) -> None:
    ctx.reporter.detail(f"{label}: filling the queue with {count:,}")
    await raw_send(ctx, workdir, emulator.connection_string, count, f"{label} (fill)", seed)


def _row(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "rate": result["rate"],
        "count": result["count"],
        "seconds": result["seconds"],
        "complete": result.get("complete", True),
        "cpu_percent": result.get("cpu_percent", {}),
    }


async def run(ctx: Context) -> dict[str, Any]:
    settings = ctx.settings
    count = settings.consume_messages
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ("raw-loop", *NOOP_VARIANTS)}
    io_runs: dict[int, list[dict[str, Any]]] = {c: [] for c in settings.io_concurrency}
    seed = 100
    for repeat in range(settings.repeats):
        workdir = ctx.new_dir(f"consume-{repeat + 1}")
        emulator = start_emulator(workdir)
        with managed(emulator):
            suffix = f"(repeat {repeat + 1}/{settings.repeats})"
            label = f"consume: raw-loop {suffix}"
            with ctx.reporter.step(label):
                seed += 1
                await _fill(ctx, workdir, emulator, count, label, seed)
                args = ["receive", "--queue", "audit", "--count", str(count)]
                result = await _child(ctx, workdir, emulator, "bench.sbtools", args, label)
                runs["raw-loop"].append(_row(result))
                ctx.reporter.log(f"consume raw-loop: {result['rate']:.0f} msg/s")
            for name, options in NOOP_VARIANTS.items():
                label = f"consume: {name} {suffix}"
                with ctx.reporter.step(label):
                    seed += 1
                    await _fill(ctx, workdir, emulator, count, label, seed)
                    args = ["--queue", "audit", "--count", str(count), "--handler", "noop"]
                    args += ["--concurrency", str(options["concurrency"])]
                    args += ["--max-message-count", str(options["max_message_count"])]
                    if options["telemetry"]:
                        args += ["--telemetry", "shipped"]
                        sink = start_sink(workdir)
                        with managed(sink):
                            result = await _child(
                                ctx, workdir, emulator, "bench.worker", args, label, sink
                            )
                    else:
                        result = await _child(ctx, workdir, emulator, "bench.worker", args, label)
                    runs[name].append(_row(result))
                    ctx.reporter.log(f"consume {name}: {result['rate']:.0f} msg/s")
            best_noop = max(runs[name][-1]["rate"] for name in NOOP_VARIANTS if name in QUIET)
            for concurrency in settings.io_concurrency:
                label = f"consume: io c={concurrency} {suffix}"
                with ctx.reporter.step(label):
                    ideal = min(concurrency / HANDLER_SECONDS, best_noop)
                    messages = max(50, round(ideal * settings.io_seconds))
                    seed += 1
                    await _fill(ctx, workdir, emulator, messages, label, seed)
                    args = ["--queue", "audit", "--count", str(messages), "--handler", "sleep"]
                    args += ["--sleep-ms", str(HANDLER_SECONDS * 1000)]
                    args += ["--concurrency", str(concurrency)]
                    result = await _child(ctx, workdir, emulator, "bench.worker", args, label)
                    row = _row(result)
                    row["ideal_rate"] = ideal
                    row["efficiency"] = ratio(row["rate"], ideal)
                    io_runs[concurrency].append(row)
                    ctx.reporter.log(
                        f"consume io c={concurrency}: {row['rate']:.0f} msg/s "
                        f"(ideal {ideal:.0f}, efficiency {row['efficiency'] * 100:.0f} %)"
                    )

    def aggregate(results: list[dict[str, Any]], label: str) -> dict[str, Any]:
        names = {n for r in results for n in r["cpu_percent"]}
        out: dict[str, Any] = {
            "label": label,
            "runs": results,
            "rate": summarize([r["rate"] for r in results]),
            "cpu_percent": {
                n: median([r["cpu_percent"][n] for r in results if n in r["cpu_percent"]])
                for n in sorted(names)
            },
        }
        if results and "efficiency" in results[0]:
            out["efficiency"] = summarize([r["efficiency"] for r in results])
            out["ideal_rate"] = summarize([r["ideal_rate"] for r in results])
        return out

    variants = {name: aggregate(results, LABELS[name]) for name, results in runs.items()}
    io = {
        str(c): aggregate(results, f"I/O-bound handler (20 ms), concurrency {c}")
        for c, results in io_runs.items()
    }
    raw = variants["raw-loop"]["rate"]["median"]
    targets = [
        target(
            f"consume {name} / raw loop",
            ratio(variants[name]["rate"]["median"], raw),
            1.0,
            detail=LABELS[name],
        )
        for name in NOOP_VARIANTS
    ]
    targets += [
        target(
            f"consume I/O-bound scaling efficiency, c={c}",
            io[str(c)]["efficiency"]["median"],
            0.8,
            unit="",
            detail=f"ideal {io[str(c)]['ideal_rate']['median']:.0f} msg/s"
            + ("" if c <= IO_TARGET_UP_TO else "; CPU-bound on 2 cores, reported only"),
        )
        for c in settings.io_concurrency
        if c <= IO_TARGET_UP_TO
    ]
    quiet = variants["consumer-noop"]["rate"]["median"]
    otel = variants["consumer-noop-otel"]["rate"]["median"]
    return {
        "settings": {
            "messages": count,
            "io_seconds": settings.io_seconds,
            "io_concurrency": list(settings.io_concurrency),
            "handler_seconds": HANDLER_SECONDS,
            "repeats": settings.repeats,
        },
        "variants": variants,
        "io": io,
        "ratios": {
            f"{name}/raw-loop": {
                "value": ratio(variants[name]["rate"]["median"], raw),
                "paired": [
                    ratio(a["rate"], b["rate"])
                    for a, b in zip(runs[name], runs["raw-loop"], strict=False)
                ],
            }
            for name in NOOP_VARIANTS
        }
        | {
            "consumer-noop-otel/consumer-noop": {
                "value": ratio(otel, quiet),
                "paired": [
                    ratio(a["rate"], b["rate"])
                    for a, b in zip(runs["consumer-noop-otel"], runs["consumer-noop"], strict=False)
                ],
            }
        },
        "targets": targets,
    }
