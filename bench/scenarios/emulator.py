"""Scenario 5 -- the emulator itself: start-up, memory, batched send and receive rates.

* Start-up: spawn ``python -m emulator --config config/servicebus.json --port 0``; time to
  the connection string on stdout, and to the first message an SDK client sent being
  acknowledged. RSS one second later (at rest).
* Throughput and memory, per repeat on a fresh emulator (in-memory queues):
  :mod:`bench.sbtools` ``send`` puts ``N`` audit events on ``audit`` in full batches; RSS
  with the ``N`` messages stored; ``receive`` takes them back (``receive_messages(100)``,
  ``complete_message`` each); RSS after, once drained.
"""

import asyncio
import time
import uuid
from statistics import median
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from bench.scenarios.consume import _child
from bench.scenarios.publish import raw_send
from bench.support import Settings, managed, rss_mib, start_emulator, summarize
from bench.systems import Context, CpuSampler


def steps(settings: Settings) -> int:
    return 1 + settings.emulator_repeats


async def _first_send(connection_string: str) -> None:
    async with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        client.get_queue_sender("audit") as sender,
    ):
        await sender.send_messages(ServiceBusMessage("{}", message_id=str(uuid.uuid4())))


async def run(ctx: Context) -> dict[str, Any]:
    settings = ctx.settings
    startups: list[dict[str, float]] = []
    with ctx.reporter.step("emulator: start-up"):
        workdir = ctx.new_dir("emulator-startup")
        for attempt in range(settings.startup_repeats):
            ctx.reporter.detail(f"start-up {attempt + 1}/{settings.startup_repeats}")
            spawned = time.perf_counter()
            emulator = start_emulator(workdir)
            with managed(emulator):
                await _first_send(emulator.connection_string)
                first_send = time.perf_counter() - spawned
                await asyncio.sleep(1.0)
                startups.append(
                    {
                        "to_connection_string_s": emulator.started_in,
                        "to_first_send_s": first_send,
                        "rss_at_rest_mib": rss_mib(emulator.pid),
                    }
                )
    count = settings.emulator_messages
    runs: list[dict[str, Any]] = []
    repeats = settings.emulator_repeats
    for repeat in range(repeats):
        label = f"emulator: {count:,} messages (repeat {repeat + 1}/{repeats})"
        with ctx.reporter.step(label):
            workdir = ctx.new_dir("emulator-throughput")
            emulator = start_emulator(workdir)
            with managed(emulator):
                await asyncio.sleep(1.0)
                rest = rss_mib(emulator.pid)
                sampler = CpuSampler({"emulator": emulator.pid})
                sent = await raw_send(
                    ctx,
                    workdir,
                    emulator.connection_string,
                    count,
                    f"{label}: send",
                    sampler=sampler,
                )
                send_cpu = sampler.usage(sent["started_unix"], sent["ended_unix"])["emulator"]
                await asyncio.sleep(1.0)
                full = rss_mib(emulator.pid)
                args = ["receive", "--queue", "audit", "--count", str(count)]
                received = await _child(
                    ctx, workdir, emulator, "bench.sbtools", args, f"{label}: receive"
                )
                await asyncio.sleep(1.0)
                drained = rss_mib(emulator.pid)
            run = {
                "send_rate": sent["rate"],
                "send_emulator_cpu_percent": send_cpu,
                "receive_rate": received["rate"],
                "receive_emulator_cpu_percent": received["cpu_percent"].get("emulator", 0.0),
                "received": received["count"],
                "rss_at_rest_mib": rest,
                "rss_with_messages_mib": full,
                "rss_after_drain_mib": drained,
            }
            runs.append(run)
            ctx.reporter.log(
                f"emulator: send {run['send_rate']:.0f}/s, receive+complete "
                f"{run['receive_rate']:.0f}/s, RSS {rest:.0f} -> {full:.0f} -> {drained:.0f} MiB"
            )
    keys = [k for k in runs[0] if k != "received"] if runs else []
    return {
        "settings": {"messages": count, "repeats": repeats},
        "startup": {
            "runs": startups,
            **{k: summarize([s[k] for s in startups]) for k in startups[0]},
        },
        "throughput": {"runs": runs, **{k: summarize([r[k] for r in runs]) for k in keys}},
        "per_message_kib": (
            median(
                [(r["rss_with_messages_mib"] - r["rss_at_rest_mib"]) * 1024 / count for r in runs]
            )
            if runs
            else float("nan")
        ),
        "targets": [],
    }
