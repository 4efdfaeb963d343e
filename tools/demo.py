"""``make run``: the whole system on one machine, driven over real HTTP.

Starts the emulator, the consumer and the producer on free loopback ports; sends a
realistic mix of requests (plus some malformed ones); injects poison messages as a foreign
producer would; waits until every accepted event is processed or dead-lettered; prints a
summary and stops everything. Exits 1 if any accepted event is unaccounted for.
"""

import asyncio
import hashlib
import secrets
import sqlite3
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from tools.processes import ROOT, ManagedProcess, emulator_config_path, free_port
from tools.workload import Poison, Request, Workload

console = Console(stderr=True)
app = typer.Typer(add_completion=False)
QUEUES = ("audit", "notifications")


@dataclass
class System:
    """The three running processes and how to reach them."""

    workdir: Path
    connection_string: str
    base_url: str
    api_key: str
    processes: list[ManagedProcess]

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    @property
    def consumer_db(self) -> Path:
        return self.workdir / "consumer.db"

    def stop(self) -> dict[str, int]:
        return {p.name: p.stop() for p in reversed(self.processes)}


@dataclass
class Outcome:
    sent: int = 0
    accepted: dict[str, str] = field(default_factory=dict)  # event id -> kind
    rejected: Counter[int] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    seconds: float = 0.0


def start_system(workdir: Path, processes: list[ManagedProcess]) -> System:
    """Start emulator, consumer and producer (appending each to ``processes`` at once,
    so the caller can stop what did start if a later one fails)."""
    emulator = ManagedProcess(
        "emulator",
        "emulator",
        args=["--config", str(emulator_config_path()), "--port", "0"],
        log_dir=workdir,
        capture_stdout=True,
    )
    processes.append(emulator)
    connection_string = emulator.read_line()
    processes.append(
        ManagedProcess(
            "consumer",
            "consumer",
            env={
                "CONSUMER_SERVICEBUS_CONNECTION_STRING": connection_string,
                "CONSUMER_AUDIT_STORE_URL": f"sqlite+aiosqlite:///{workdir / 'consumer.db'}",
                "CONSUMER_DELIVERY_LOG_PATH": "",
                "CONSUMER_HEALTH_HOST": "127.0.0.1",
                "CONSUMER_HEALTH_PORT": str(free_port()),
                "CONSUMER_TELEMETRY_FILE": str(workdir / "consumer-telemetry.jsonl"),
            },
            log_dir=workdir,
        )
    )
    api_key = secrets.token_urlsafe(32)
    port = free_port()
    producer = ManagedProcess(
        "producer",
        "producer",
        env={
            "PRODUCER_SERVICEBUS_CONNECTION_STRING": connection_string,
            "PRODUCER_PORT": str(port),
            "PRODUCER_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'producer-outbox.db'}",
            "PRODUCER_API_KEYS": "demo:" + hashlib.sha256(api_key.encode()).hexdigest(),
            "PRODUCER_TELEMETRY_FILE": str(workdir / "producer-telemetry.jsonl"),
        },
        log_dir=workdir,
    )
    processes.append(producer)
    base_url = f"http://127.0.0.1:{port}"
    producer.wait_http_ok(f"{base_url}/healthz")
    return System(workdir, connection_string, base_url, api_key, processes)


async def send_all(system: System, requests: list[Request], concurrency: int) -> Outcome:
    """POST every request with ``concurrency`` in flight, showing a progress bar."""
    outcome = Outcome()
    limit = asyncio.Semaphore(concurrency)
    headers = {"content-type": "application/json", **system.headers}
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn())
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=system.base_url, timeout=30) as client:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("HTTP requests", total=len(requests))

            async def send(request: Request) -> None:
                async with limit:
                    response = await client.post(
                        request.path, content=request.body, headers=headers
                    )
                outcome.sent += 1
                if response.status_code == 202:
                    outcome.accepted[response.json()["id"]] = request.kind
                else:
                    outcome.rejected[response.status_code] += 1
                if response.status_code != request.expect:
                    outcome.unexpected.append(f"{request.path} -> {response.status_code}")
                progress.advance(task)

            await asyncio.gather(*(send(request) for request in requests))
    outcome.seconds = time.monotonic() - started
    return outcome


def inject_poison(connection_string: str, poison: list[Poison]) -> None:
    """Send ``poison`` straight to the queues, as a foreign producer would."""
    with ServiceBusClient.from_connection_string(connection_string) as client:
        for queue in sorted({p.queue for p in poison}):
            with client.get_queue_sender(queue) as sender:
                sender.send_messages(
                    [
                        ServiceBusMessage(
                            p.body, message_id=p.message_id, content_type=p.content_type
                        )
                        for p in poison
                        if p.queue == queue
                    ]
                )


def dead_letters(connection_string: str) -> dict[str, str]:
    """message id -> dead-letter reason, peeked (not received) from each DLQ."""
    found: dict[str, str] = {}
    with ServiceBusClient.from_connection_string(connection_string) as client:
        for queue in QUEUES:
            with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
                while batch := dlq.peek_messages(max_message_count=250):
                    for message in batch:
                        found[str(message.message_id)] = message.dead_letter_reason or ""
    return found


def _utc(value: str | datetime) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def processed(consumer_db: Path) -> dict[str, float]:
    """event id -> seconds from acceptance to processing, from the consumer's own tables."""
    latencies: dict[str, float] = {}
    if not consumer_db.exists():
        return latencies
    queries = [
        "SELECT event_id, accepted_at, recorded_at FROM audit_events",
        "SELECT event_id, accepted_at, delivered_at FROM deliveries WHERE status = 'delivered'",
    ]
    with sqlite3.connect(consumer_db) as db:
        for query in queries:
            try:
                rows = db.execute(query).fetchall()
            except sqlite3.OperationalError:  # tables not migrated yet
                continue
            for event_id, accepted, done in rows:
                latencies[event_id] = (_utc(done) - _utc(accepted)).total_seconds()
    return latencies


def _percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100)[q - 1]


def summary(
    outcome: Outcome,
    done: dict[str, float],
    dead: dict[str, str],
    stats: dict[str, int],
    unaccounted: int,
    wrong_reason: int,
    drain_seconds: float,
) -> Table:
    latencies = [done[i] for i in outcome.accepted if i in done]
    p50, p95 = (_percentile(latencies, q) * 1000 for q in (50, 95))
    kinds = Counter(kind for event_id, kind in outcome.accepted.items() if event_id in done)
    table = Table(title="Summary", show_header=False)
    rows: list[tuple[str, object]] = [
        ("requests sent", outcome.sent),
        ("accepted (202)", len(outcome.accepted)),
        ("rejected", ", ".join(f"{n} x {code}" for code, n in outcome.rejected.items()) or 0),
        ("unexpected status", len(outcome.unexpected)),
        ("published by producer", stats.get("published", "?")),
        ("processed", len(latencies)),
        ("  audit events stored", kinds["audit"]),
        ("  notifications delivered", kinds["notification"]),
        ("dead-lettered", len(dead)),
        *[(f"  {reason}", n) for reason, n in sorted(Counter(dead.values()).items())],
        ("poison with wrong reason", wrong_reason),
        ("unaccounted", unaccounted),
        (
            "latency p50 / p95 (accepted -> processed)",
            f"{p50:.0f} ms / {p95:.0f} ms",
        ),
        ("HTTP rate", f"{outcome.sent / outcome.seconds:.0f} req/s"),
        (
            "end-to-end rate (first request -> all processed)",
            f"{len(latencies) / drain_seconds:.0f} events/s",
        ),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    return table


@app.command()
def main(
    requests: Annotated[int, typer.Option(min=1, help="HTTP requests to send.")] = 1200,
    poison: Annotated[int, typer.Option(min=0, help="Poison messages to inject.")] = 25,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 32,
    seed: Annotated[int, typer.Option(help="Workload random seed.")] = 7,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for processing.")] = 180,
    run_dir: Annotated[Path | None, typer.Option(help="Where data, logs and traces go.")] = None,
) -> None:
    """Run emulator, consumer and producer; drive them; print what happened."""
    started = time.monotonic()
    workdir = run_dir or ROOT / ".run" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    processes: list[ManagedProcess] = []
    ok = False
    try:
        with console.status("starting emulator, consumer and producer"):
            system = start_system(workdir, processes)
        console.print(f"[green]up[/] in {time.monotonic() - started:.1f}s; logs in {workdir}")
        workload = Workload(seed)
        outcome = asyncio.run(send_all(system, workload.requests(requests), concurrency))
        poison_messages = workload.poison(*QUEUES, poison)
        inject_poison(system.connection_string, poison_messages)
        expected_dead = {p.message_id: p.reason for p in poison_messages}

        deadline = time.monotonic() + timeout
        with console.status("waiting for the consumer") as status:
            while True:
                done = processed(system.consumer_db)
                dead = dead_letters(system.connection_string)
                missing = [i for i in outcome.accepted if i not in done and i not in dead]
                missing += [i for i in expected_dead if i not in dead]
                total = len(outcome.accepted) + len(expected_dead)
                status.update(f"waiting for the consumer: {total - len(missing)}/{total} settled")
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        drain_seconds = time.monotonic() - started
        stats = httpx.get(f"{system.base_url}/v1/stats", headers=system.headers).json()
        wrong_reason = sum(1 for i, r in expected_dead.items() if i in dead and dead[i] != r)
        console.print(
            summary(outcome, done, dead, stats, len(missing), wrong_reason, drain_seconds)
        )
        for event_id in missing[:10]:
            console.print(f"[red]unaccounted[/] {event_id}")
        ok = not missing and not wrong_reason and not outcome.unexpected
    finally:
        with console.status("stopping"):
            codes = {p.name: p.stop() for p in reversed(processes)}
        console.print("exit codes: " + ", ".join(f"{n}={c}" for n, c in codes.items()))
        ok = ok and not any(codes.values())
    console.print(f"total {time.monotonic() - started:.1f}s")
    if not ok:
        console.print(f"[red]FAILED[/]: see the summary above and the logs in {workdir}")
        raise typer.Exit(1)
    console.print(
        "[green]OK[/]: every accepted event was processed or dead-lettered for its reason"
    )
    console.print(
        f"one event's trace: python -m tools.traceview {workdir}/producer-telemetry.jsonl "
        f"{workdir}/consumer-telemetry.jsonl"
    )


if __name__ == "__main__":
    app()
