"""``make run``: the whole system on one machine, driven over real HTTP.

Starts the emulator, the consumer and the producer on free loopback ports; sends a
realistic mix of requests (plus some malformed ones); injects poison messages as a foreign
producer would; waits until every accepted event is processed or dead-lettered; prints a
summary and stops everything. Exits 1 if any accepted event is unaccounted for, if an
event meant to be dead-lettered (poison, a missing template) was not, with its reason, or
if another was, or if the consumer's delivery log disagrees with its delivered rows.

The consumer runs in the ``log`` delivery mode: every e-mail is built from its template
and every webhook request is checked and signed exactly as for sending, and nothing
leaves the machine.
"""

import asyncio
import hashlib
import json
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

    @property
    def delivery_log(self) -> Path:
        return self.workdir / "notifications.jsonl"

    def stop(self) -> dict[str, int]:
        return {p.name: p.stop() for p in reversed(self.processes)}


@dataclass
class Outcome:
    sent: int = 0
    accepted: dict[str, str] = field(default_factory=dict)  # event id -> kind
    dead_letter: dict[str, str] = field(default_factory=dict)  # event id -> expected reason
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
                "CONSUMER_DELIVERY_LOG_PATH": str(workdir / "notifications.jsonl"),
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
                    event_id = response.json()["id"]
                    outcome.accepted[event_id] = request.kind
                    if request.dead_letter:
                        outcome.dead_letter[event_id] = request.dead_letter
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


def delivery_log(path: Path) -> list[dict[str, object]]:
    """The consumer's delivery log: one entry per delivered notification."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as log:
        return [json.loads(line) for line in log if line.strip()]


def delivered_rows(consumer_db: Path) -> set[str]:
    """Event ids the consumer recorded as delivered."""
    with sqlite3.connect(consumer_db) as db:
        rows = db.execute("SELECT event_id FROM deliveries WHERE status = 'delivered'")
        return {event_id for (event_id,) in rows}


def by_template(entries: list[dict[str, object]], channel: str) -> str:
    """``"<n> (<template> <n>, ...)"`` for delivered ``channel`` notifications with a
    template."""
    counts = Counter(
        str(e["template"]) for e in entries if e["channel"] == channel and e.get("template")
    )
    detail = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    return f"{sum(counts.values())} ({detail})" if counts else "0"


def check_delivery_log(system: System) -> str | None:
    """``None`` when the delivery log has one line per delivered row and no other;
    otherwise what is wrong."""
    lines = Counter(str(entry["event_id"]) for entry in delivery_log(system.delivery_log))
    rows = delivered_rows(system.consumer_db)
    duplicated = sum(1 for n in lines.values() if n > 1)
    missing, extra = len(rows - set(lines)), len(set(lines) - rows)
    if duplicated or missing or extra:
        return (
            f"delivery log disagrees with the delivered rows: {missing} missing, "
            f"{extra} not delivered, {duplicated} duplicated"
        )
    return None


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
    unexpected_dead: int,
    deliveries: list[dict[str, object]],
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
        ("    e-mails rendered from a template", by_template(deliveries, "email")),
        ("    webhooks carrying a template id", by_template(deliveries, "webhook")),
        (
            "    with a plain body",
            sum(1 for entry in deliveries if not entry.get("template")),
        ),
        ("dead-lettered", len(dead)),
        *[(f"  {reason}", n) for reason, n in sorted(Counter(dead.values()).items())],
        ("  accepted events the workload meant to dead-letter", len(outcome.dead_letter)),
        ("meant to be dead-lettered but wrong reason or processed", wrong_reason),
        ("dead-lettered though valid", unexpected_dead),
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
        poison_dead = {p.message_id: p.reason for p in poison_messages}
        expected_dead = {**poison_dead, **outcome.dead_letter}

        deadline = time.monotonic() + timeout
        with console.status("waiting for the consumer") as status:
            while True:
                done = processed(system.consumer_db)
                dead = dead_letters(system.connection_string)
                missing = [i for i in outcome.accepted if i not in done and i not in dead]
                missing += [i for i in poison_dead if i not in dead]
                total = len(outcome.accepted) + len(poison_dead)
                status.update(f"waiting for the consumer: {total - len(missing)}/{total} settled")
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        drain_seconds = time.monotonic() - started
        stats = httpx.get(f"{system.base_url}/v1/stats", headers=system.headers).json()
        wrong_reason = sum(
            1 for i, r in expected_dead.items() if i in done or (i in dead and dead[i] != r)
        )
        unexpected_dead = [i for i in outcome.accepted if i in dead and i not in expected_dead]
        deliveries = delivery_log(system.delivery_log)
        console.print(
            summary(
                outcome,
                done,
                dead,
                stats,
                len(missing),
                wrong_reason,
                len(unexpected_dead),
                deliveries,
                drain_seconds,
            )
        )
        for event_id in missing[:10]:
            console.print(f"[red]unaccounted[/] {event_id}")
        for event_id in unexpected_dead[:10]:
            console.print(f"[red]dead-lettered though valid[/] {event_id}: {dead[event_id]}")
        ok = not missing and not wrong_reason and not unexpected_dead and not outcome.unexpected
    finally:
        with console.status("stopping"):
            codes = {p.name: p.stop() for p in reversed(processes)}
        console.print("exit codes: " + ", ".join(f"{n}={c}" for n, c in codes.items()))
        ok = ok and not any(codes.values())
    # After the consumer stopped: each delivered row has its line, once.
    if ok and (log_problem := check_delivery_log(system)):
        console.print(f"[red]{log_problem}[/] ({system.delivery_log})")
        ok = False
    elif ok:
        console.print(f"delivery log: one line per delivered notification ({system.delivery_log})")
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
