"""Measure the emulator: start-up time, memory, and throughput through the Python SDK.

Run: ``python -m emulator.bench [--messages 100000] [--receive 10000] [--data-dir]
[--no-topics] [--fanout-messages 5000] [--fanout-memory-messages 20000]``.

What it does, against a real ``python -m emulator`` process (so RSS is the emulator's alone):

1. start-up: ``Emulator.start()`` in this process until the port accepts, and the CLI from
   spawn to its connection-string line (interpreter start and imports included);
2. RSS of the emulator process at rest (``/proc/<pid>/status`` ``VmRSS``);
3. batched send: ``--messages`` messages of ``--size`` bytes in ``ServiceBusMessageBatch``es
   from one async sender, then RSS with all of them queued;
4. receive + complete: ``--receive`` messages with one async receiver (prefetch 100),
   each completed in turn (one settlement round trip per message, as most consumers do);
5. topics (unless ``--no-topics``), in a second emulator process: its CLI start-up and RSS at
   rest; RSS with ``--fanout-memory-messages`` sent into a topic with 5 ``$Default``
   subscriptions (20,000 gives 100,000 copies, comparable to the queue's 100,000); then
   fan-out: ``--fanout-messages`` batched sends into topics with 1, 5 and 20 subscriptions,
   half of them (rounded down) with the SQL filter ``n % 2 = 0`` that passes every other
   message. Sends/s counts messages into the topic; copies/s counts the subscription copies
   they produced, read back from the administration API's runtime properties.

With ``--data-dir`` the emulator keeps the queue in SQLite (``synchronous=FULL`` unless
``--durability normal``). Numbers depend on the machine; they are for comparison.
This is a tool, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.management import ServiceBusAdministrationClient

from emulator.config import parse_config
from emulator.runtime import Emulator
from emulator.testing import (
    combine_configs,
    queue_config,
    sql_rule,
    subscription_config,
    topic_config,
)

__all__ = ["main"]

_QUEUE = "bench"
_MEMORY_TOPIC = "bench-memory"
_FANOUT = (1, 5, 20)
_HALF_FILTER = "n % 2 = 0"


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _in_process_startup() -> float:
    config = parse_config(queue_config(_QUEUE))
    started = time.perf_counter()
    emulator = Emulator(config)
    emulator.start()
    import socket

    with socket.create_connection(("127.0.0.1", emulator.port), timeout=5):
        elapsed = time.perf_counter() - started
    emulator.stop()
    return elapsed


def _spawn(
    config: Path, data_dir: str | None, durability: str
) -> tuple[subprocess.Popen[str], str, str, float]:
    """Start ``python -m emulator``; returns the process, its connection string, its
    certificate path (stdout line 2) and the seconds from spawn to the first line."""
    command = [sys.executable, "-m", "emulator", "--config", str(config), "--port", "0"]
    command += ["--log-level", "WARNING"]
    if data_dir is not None:
        command += ["--data-dir", data_dir, "--durability", durability]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    stdout = process.stdout
    lines: list[str] = []
    first_line_at: list[float] = []

    def read_two() -> None:
        lines.append(stdout.readline())
        first_line_at.append(time.perf_counter())
        lines.append(stdout.readline())

    # A thread, so that a silent emulator cannot hang the bench past the timeout.
    reader = threading.Thread(target=read_two, daemon=True)
    reader.start()
    reader.join(30)
    if len(lines) < 2 or not lines[0]:
        process.kill()
        raise RuntimeError("the emulator printed no connection string")
    return process, lines[0].strip(), lines[1].strip(), first_line_at[0] - started


async def _send(connection_string: str, count: int, size: int, topic: str | None = None) -> float:
    """Send ``count`` messages in batches to the bench queue, or to ``topic`` with the
    application property ``n`` (0, 1, 2 ...) for the SQL filter; returns seconds.

    The warm-up message sent first is not counted (a topic's copies include it)."""
    body = b"x" * size

    def message(n: int) -> ServiceBusMessage:
        if topic is None:
            return ServiceBusMessage(body)
        return ServiceBusMessage(body, application_properties={"n": n})

    async with ServiceBusClient.from_connection_string(connection_string) as client:
        sender = (
            client.get_queue_sender(_QUEUE) if topic is None else client.get_topic_sender(topic)
        )
        async with sender:
            await sender.send_messages(message(-1))  # warm up the link
            started = time.perf_counter()
            sent = 0
            while sent < count:
                batch = await sender.create_message_batch()
                while sent < count:
                    try:
                        batch.add_message(message(sent))
                    except ValueError:
                        break
                    sent += 1
                await sender.send_messages(batch)
            return time.perf_counter() - started


async def _receive(connection_string: str, count: int) -> float:
    async with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        client.get_queue_receiver(_QUEUE, prefetch_count=100) as receiver,
    ):
        started = time.perf_counter()
        done = 0
        while done < count:
            batch = await receiver.receive_messages(max_message_count=100, max_wait_time=5)
            if not batch:
                raise RuntimeError(f"received only {done} of {count}")
            for message in batch:
                await receiver.complete_message(message)
            done += len(batch)
        return time.perf_counter() - started


def _fanout_topic(subscriptions: int) -> str:
    return f"bench-fanout-{subscriptions}"


def _topics_config() -> dict[str, Any]:
    topics = [topic_config(_MEMORY_TOPIC, *(f"s{i}" for i in range(5)))]
    for count in _FANOUT:
        filtered = count // 2
        subs: list[str | dict[str, Any]] = [
            subscription_config(f"s{i}", sql_rule("half", _HALF_FILTER)) for i in range(filtered)
        ]
        subs += [f"s{i}" for i in range(filtered, count)]
        topics.append(topic_config(_fanout_topic(count), *subs))
    return combine_configs(*topics)


def _copies(connection_string: str, ca_file: str, topic: str) -> int:
    """Messages held by ``topic``'s subscriptions, from the administration API."""
    with ServiceBusAdministrationClient.from_connection_string(
        connection_string, connection_verify=ca_file
    ) as admin:
        return sum(
            admin.get_subscription_runtime_properties(topic, sub.name).total_message_count or 0
            for sub in admin.list_subscriptions(topic)
        )


def _run_topics(
    results: dict[str, Any],
    tmp: str,
    data_dir: bool,
    durability: str,
    fanout_messages: int,
    memory_messages: int,
    size: int,
) -> None:
    config = Path(tmp) / "topics.json"
    config.write_text(json.dumps(_topics_config()), encoding="utf-8")
    store = str(Path(tmp) / "topics-data") if data_dir else None
    process, connection_string, ca_file, startup = _spawn(config, store, durability)
    try:
        results["topics_startup_cli_s"] = round(startup, 3)
        time.sleep(0.5)
        results["topics_rss_at_rest_mib"] = round(_rss_mib(process.pid), 1)
        asyncio.run(_send(connection_string, memory_messages, size, _MEMORY_TOPIC))
        copies = _copies(connection_string, ca_file, _MEMORY_TOPIC) - 5  # minus warm-up
        results[f"rss_with_{memory_messages}_into_5_subscriptions_mib"] = round(
            _rss_mib(process.pid), 1
        )
        results[f"copies_held_for_{memory_messages}_into_5_subscriptions"] = copies
        for count in _FANOUT:
            topic = _fanout_topic(count)
            send_s = asyncio.run(_send(connection_string, fanout_messages, size, topic))
            # The warm-up message (n = -1) fails the filter: it has one copy per plain subscription.
            copies = _copies(connection_string, ca_file, topic) - (count - count // 2)
            results[f"fanout_{count}_subscriptions"] = {
                "sql_filtered_subscriptions": count // 2,
                "sends_per_s": round(fanout_messages / send_s),
                "copies_per_s": round(copies / send_s),
                "copies": copies,
            }
    finally:
        process.terminate()
        process.wait(30)


def run(
    messages: int,
    receive: int,
    size: int,
    data_dir: bool,
    durability: str,
    topics: bool = True,
    fanout_messages: int = 5_000,
    fanout_memory_messages: int = 20_000,
) -> dict[str, Any]:
    """Run the measurements; returns them as a dict (also printed by :func:`main`)."""
    results: dict[str, Any] = {
        "messages": messages,
        "message_size_bytes": size,
        "data_dir": data_dir,
        "durability": durability if data_dir else None,
        "cpu_count": os.cpu_count(),
    }
    results["startup_in_process_s"] = round(_in_process_startup(), 4)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(queue_config(_QUEUE, LockDuration="PT5M")), encoding="utf-8")
        store = str(Path(tmp) / "data") if data_dir else None
        process, connection_string, _, startup = _spawn(config, store, durability)
        try:
            results["startup_cli_s"] = round(startup, 3)
            time.sleep(0.5)
            results["rss_at_rest_mib"] = round(_rss_mib(process.pid), 1)
            send_s = asyncio.run(_send(connection_string, messages, size))
            results["send_msgs_per_s"] = round(messages / send_s)
            results[f"rss_with_{messages}_queued_mib"] = round(_rss_mib(process.pid), 1)
            receive_count = min(receive, messages)
            receive_s = asyncio.run(_receive(connection_string, receive_count))
            results["receive_complete_msgs_per_s"] = round(receive_count / receive_s)
        finally:
            process.terminate()
            process.wait(30)
        if topics:
            _run_topics(
                results, tmp, data_dir, durability, fanout_messages, fanout_memory_messages, size
            )
    return results


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; prints one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m emulator.bench", description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000, help="messages to send")
    parser.add_argument("--receive", type=int, default=10_000, help="messages to receive")
    parser.add_argument("--size", type=int, default=100, help="body size in bytes")
    parser.add_argument("--data-dir", action="store_true", help="use a SQLite data directory")
    parser.add_argument("--durability", choices=["full", "normal"], default="full")
    parser.add_argument(
        "--topics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure topics: fan-out and memory (default: yes)",
    )
    parser.add_argument(
        "--fanout-messages", type=int, default=5_000, help="messages into each fan-out topic"
    )
    parser.add_argument(
        "--fanout-memory-messages",
        type=int,
        default=20_000,
        help="messages into the 5-subscription topic for the memory figure",
    )
    args = parser.parse_args(argv)
    results = run(
        args.messages,
        args.receive,
        args.size,
        args.data_dir,
        args.durability,
        topics=args.topics,
        fanout_messages=args.fanout_messages,
        fanout_memory_messages=args.fanout_memory_messages,
    )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
