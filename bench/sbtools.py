"""Raw ``azure-servicebus`` baselines, each run as its own process.

``python -m bench.sbtools send --queue Q --count N --out OUT.json``
    Build ``N`` audit-event messages exactly as the producer does (structured-mode
    CloudEvents, same properties), then send them in ``ServiceBusMessageBatch`` es, each
    filled to the batch size limit, over one long-lived sender. Timed from the first
    ``create_message_batch`` after the link is open to the last send's acknowledgement.
``python -m bench.sbtools receive --queue Q --count N --out OUT.json``
    The raw consumer loop: ``receive_messages(max_message_count=100)``, then
    ``complete_message`` for each, until ``N`` are completed. Timed from the first
    non-empty receive to the last completion.

The connection string comes from ``BENCH_CONNECTION_STRING``.
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessageSizeExceededError

from bench.support import audit_envelopes
from common.runtime import event_loop_factory
from contracts import EventEnvelope
from contracts.servicebus import STRUCTURED_CONTENT_TYPE


class Clock:
    """Wall-clock start and end (Unix) and this process's CPU % over the timed part."""

    def __init__(self) -> None:
        self.started_unix = time.time()
        self._cpu = _cpu_seconds()
        self._started = time.perf_counter()

    def stop(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        return {
            "started_unix": self.started_unix,
            "ended_unix": self.started_unix + elapsed,
            "cpu_percent": (_cpu_seconds() - self._cpu) / elapsed * 100,
        }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def message_for(envelope: EventEnvelope) -> ServiceBusMessage:
    """The message ``contracts.servicebus.to_servicebus_message`` builds (minus its size
    check, which only costs time here)."""
    return ServiceBusMessage(
        envelope.model_dump_json(exclude_none=True),
        message_id=envelope.id,
        subject=envelope.type,
        content_type=STRUCTURED_CONTENT_TYPE,
        correlation_id=envelope.correlationid,
        application_properties={
            "eventType": envelope.type,
            "schemaVersion": envelope.schemaversion,
        },
    )


async def send(connection_string: str, queue: str, count: int, seed: int) -> dict[str, Any]:
    messages = [message_for(e) for e in audit_envelopes(count, seed)]
    batches = 0
    async with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        client.get_queue_sender(queue) as sender,
    ):
        clock = Clock()
        started = time.perf_counter()
        batch = await sender.create_message_batch()
        for message in messages:
            try:
                batch.add_message(message)
            except MessageSizeExceededError:
                await sender.send_messages(batch)
                batches += 1
                batch = await sender.create_message_batch()
                batch.add_message(message)
        if len(batch):
            await sender.send_messages(batch)
            batches += 1
        seconds = time.perf_counter() - started
    return {
        "count": count,
        "seconds": seconds,
        "rate": count / seconds,
        "batches": batches,
        **clock.stop(),
    }


async def receive(
    connection_string: str, queue: str, count: int, batch_size: int, idle_timeout: float
) -> dict[str, Any]:
    done = 0
    clock: Clock | None = None
    started: float | None = None
    finished = time.perf_counter()
    async with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        client.get_queue_receiver(queue) as receiver,
    ):
        while done < count:
            messages = await receiver.receive_messages(
                max_message_count=batch_size, max_wait_time=idle_timeout
            )
            if not messages:
                break
            if started is None:
                clock = Clock()
                started = time.perf_counter()
            for message in messages:
                await receiver.complete_message(message)
            done += len(messages)
            finished = time.perf_counter()
    seconds = finished - (started if started is not None else finished)
    return {
        "count": done,
        "seconds": seconds,
        "rate": done / seconds if seconds > 0 else float("nan"),
        "complete": done >= count,
        **(clock.stop() if clock is not None else {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sbtools")
    parser.add_argument("command", choices=["send", "receive"])
    parser.add_argument("--queue", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--batch", type=int, default=100, help="receive: max_message_count")
    parser.add_argument("--idle-timeout", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    connection_string = os.environ["BENCH_CONNECTION_STRING"]
    # The baselines run on the same event loop as the producer and consumer they are
    # compared with, so a ratio measures the code, not the loop.
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        if args.command == "send":
            result = runner.run(send(connection_string, args.queue, args.count, args.seed))
        else:
            result = runner.run(
                receive(connection_string, args.queue, args.count, args.batch, args.idle_timeout)
            )
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
