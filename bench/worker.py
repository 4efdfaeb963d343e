"""The consumer's worker runtime with a benchmark handler, as its own process.

``python -m bench.worker --queue Q --count N --handler noop|sleep [--sleep-ms 20]
[--concurrency C] [--max-message-count M] [--prefetch P] [--receivers R]
[--telemetry off|shipped] --out OUT.json``

Runs :class:`consumer.runtime.worker.Worker` -- the same receive loop, lock renewal,
envelope validation, retry ladder and settlement as ``python -m consumer`` -- with one
route whose handler does nothing (``noop``) or awaits ``asyncio.sleep`` (``sleep``, an
I/O-bound handler). Stops once ``N`` messages are settled. Timed from the first handler
call to the ``N``-th settlement (polled every 5 ms).

The connection string comes from ``BENCH_CONNECTION_STRING``. ``--telemetry shipped``
sets telemetry up as ``python -m consumer`` does with its shipped defaults (environment
``production``, exporter ``auto``: OTLP/HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT``, which
the caller sets); ``off`` (the default) installs nothing, so spans are no-ops.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench.sbtools import Clock
from common.runtime import event_loop_factory
from common.servicebus import ServiceBusConnection, open_servicebus_client
from common.telemetry import TelemetrySettings, configure_telemetry
from consumer.retry import RetryPolicy
from consumer.runtime.processor import QueueConfig
from consumer.runtime.routing import Route
from consumer.runtime.worker import Worker
from contracts import EventEnvelope


async def run(
    connection_string: str,
    queue: str,
    count: int,
    *,
    handler: str,
    sleep_ms: float,
    concurrency: int,
    max_message_count: int,
    prefetch: int,
    receivers: int | None,
    give_up_after: float,
) -> dict[str, Any]:
    first: float | None = None
    clock: Clock | None = None
    delay = sleep_ms / 1000

    def started() -> None:
        nonlocal first, clock
        if first is None:
            clock = Clock()
            first = time.perf_counter()

    async def noop(envelope: EventEnvelope) -> bool:
        if first is None:
            started()
        return True

    async def sleeper(envelope: EventEnvelope) -> bool:
        if first is None:
            started()
        await asyncio.sleep(delay)
        return True

    route = Route("bench", noop if handler == "noop" else sleeper, RetryPolicy())
    config = QueueConfig(
        name=queue,
        concurrency=concurrency,
        max_message_count=max_message_count,
        prefetch_count=prefetch,
        receivers=receivers,
        event_types=None,
    )
    connection = ServiceBusConnection(servicebus_connection_string=SecretStr(connection_string))
    async with open_servicebus_client(connection) as client:
        worker = Worker(client, [config], lambda envelope: route, shutdown_grace_period=10)
        stats = worker.stats.queue(queue)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        deadline = time.perf_counter() + give_up_after
        while stats.completed + sum(stats.dead_lettered.values()) < count:
            if running.done() or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.005)
        finished = time.perf_counter()
        timing = clock.stop() if clock is not None else {}
        stop.set()
        await running
    settled = stats.completed + sum(stats.dead_lettered.values())
    seconds = finished - (first if first is not None else finished)
    return {
        "count": settled,
        "seconds": seconds,
        "rate": settled / seconds if seconds > 0 else float("nan"),
        "complete": settled >= count,
        "stats": stats.to_json(),
        **timing,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--handler", choices=["noop", "sleep"], default="noop")
    parser.add_argument("--sleep-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-message-count", type=int, default=50)
    parser.add_argument("--prefetch", type=int, default=0)
    parser.add_argument(
        "--receivers", type=int, default=None, help="default: the consumer's, by concurrency"
    )
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--telemetry", choices=["off", "shipped"], default="off")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    telemetry = None
    if args.telemetry == "shipped":
        if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            parser.error("--telemetry shipped needs OTEL_EXPORTER_OTLP_ENDPOINT")
        settings = TelemetrySettings(environment="production")
        telemetry = configure_telemetry("consumer", settings)
    # The same event loop as the consumer's own process (consumer/cli/worker.py).
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        result = runner.run(
            run(
                os.environ["BENCH_CONNECTION_STRING"],
                args.queue,
                args.count,
                handler=args.handler,
                sleep_ms=args.sleep_ms,
                concurrency=args.concurrency,
                max_message_count=args.max_message_count,
                prefetch=args.prefetch,
                receivers=args.receivers,
                give_up_after=args.timeout,
            )
        )
    if telemetry is not None:
        telemetry.shutdown()
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
