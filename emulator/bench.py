"""Measure the emulator: start-up time, memory, and throughput through the Python SDK.

Run: ``python -m emulator.bench [--messages 100000] [--receive 10000] [--data-dir]``.

What it does, against a real ``python -m emulator`` process (so RSS is the emulator's alone):

1. start-up: ``Emulator.start()`` in this process until the port accepts, and the CLI from
   spawn to its connection-string line (interpreter start and imports included);
2. RSS of the emulator process at rest (``/proc/<pid>/status`` ``VmRSS``);
3. batched send: ``--messages`` messages of ``--size`` bytes in ``ServiceBusMessageBatch``es
   from one async sender, then RSS with all of them queued;
4. receive + complete: ``--receive`` messages with one async receiver (prefetch 100),
   each completed in turn (one settlement round trip per message, as most consumers do).

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

from emulator.config import parse_config
from emulator.runtime import Emulator
from emulator.testing import queue_config

__all__ = ["main"]

_QUEUE = "bench"


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
) -> tuple[subprocess.Popen[str], str, float]:
    command = [sys.executable, "-m", "emulator", "--config", str(config), "--port", "0"]
    command += ["--log-level", "WARNING"]
    if data_dir is not None:
        command += ["--data-dir", data_dir, "--durability", durability]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(30)
    if not lines or not lines[0]:
        process.kill()
        raise RuntimeError("the emulator printed no connection string")
    return process, lines[0].strip(), time.perf_counter() - started


async def _send(connection_string: str, count: int, size: int) -> float:
    body = b"x" * size
    async with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        client.get_queue_sender(_QUEUE) as sender,
    ):
        await sender.send_messages(ServiceBusMessage(body))  # warm up the link
        started = time.perf_counter()
        sent = 0
        while sent < count:
            batch = await sender.create_message_batch()
            while sent < count:
                try:
                    batch.add_message(ServiceBusMessage(body))
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


def run(messages: int, receive: int, size: int, data_dir: bool, durability: str) -> dict[str, Any]:
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
        process, connection_string, startup = _spawn(config, store, durability)
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
    return results


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; prints one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m emulator.bench", description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000, help="messages to send")
    parser.add_argument("--receive", type=int, default=10_000, help="messages to receive")
    parser.add_argument("--size", type=int, default=100, help="body size in bytes")
    parser.add_argument("--data-dir", action="store_true", help="use a SQLite data directory")
    parser.add_argument("--durability", choices=["full", "normal"], default="full")
    args = parser.parse_args(argv)
    results = run(args.messages, args.receive, args.size, args.data_dir, args.durability)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
