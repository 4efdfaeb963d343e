"""``make run``: the whole system on one machine, driven over real HTTP.

Starts the emulator, the consumer, the producer and the operations console (its URL and a
key made for the run are printed) on free loopback ports; sends a
realistic mix of requests (plus some malformed ones) over keep-alive connections with a
client cheap enough not to be what is measured (:mod:`tools.http_driver`); injects poison
messages as a foreign producer would; waits until every accepted event is processed or
dead-lettered, polling over one Service Bus client and one SQLite connection; prints a
summary and stops everything. Exits 1 if any request got another status than the workload
expects, if any accepted event is unaccounted for, if an event meant to be dead-lettered
(poison, a missing template) was not, with its reason, or if another was, or if the
consumer's delivery log disagrees with its delivered rows.

Rates (start-up is in neither): the HTTP phase is requests per second from the first
request started to the last answer; end to end is processed events per second from the
first acceptance to the last processing, by the producer's and the consumer's own UTC
timestamps.

The consumer runs in the ``log`` delivery mode: every e-mail is built from its template
and every webhook request is checked and signed exactly as for sending, and nothing
leaves the machine.
"""

import asyncio
import hashlib
import json
import secrets
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from azure.servicebus import ServiceBusMessage
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from console.apikeys import new_console_key
from tools.delivery_check import by_template, check_delivery_log, delivery_log
from tools.demo_watch import ConsumerTables, Processing, ServiceBusWatch
from tools.http_driver import Answer, build_post, post_all
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
    host: str
    port: int
    api_key: str
    processes: list[ManagedProcess]
    console_url: str = ""
    console_key: str = ""

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

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
    """What the HTTP phase got back; ``send_seconds`` runs from the first request
    started to the last answer."""

    sent: int = 0
    accepted: dict[str, str] = field(default_factory=dict)  # event id -> kind
    dead_letter: dict[str, str] = field(default_factory=dict)  # event id -> expected reason
    rejected: Counter[int] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    send_seconds: float = 0.0


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
    consumer_health = free_port()
    processes.append(
        ManagedProcess(
            "consumer",
            "consumer",
            env={
                "CONSUMER_SERVICEBUS_CONNECTION_STRING": connection_string,
                "CONSUMER_AUDIT_STORE_URL": f"sqlite+aiosqlite:///{workdir / 'consumer.db'}",
                "CONSUMER_DELIVERY_LOG_PATH": str(workdir / "notifications.jsonl"),
                "CONSUMER_HEALTH_HOST": "127.0.0.1",
                "CONSUMER_HEALTH_PORT": str(consumer_health),
                "CONSUMER_TELEMETRY_FILE": str(workdir / "consumer-telemetry.jsonl"),
                # The console's outcome charts read these minutes: fresher than the 10 s default.
                "CONSUMER_OUTCOME_FLUSH_INTERVAL": "2",
            },
            log_dir=workdir,
        )
    )
    api_key = secrets.token_urlsafe(32)
    host, port = "127.0.0.1", free_port()
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
    system = System(workdir, connection_string, host, port, api_key, processes)
    producer.wait_http_ok(f"{system.base_url}/healthz")
    start_console(system)
    return system


def start_console(system: System) -> None:
    """Start the operations console on a free port, with an operator key made for the run."""
    key, entry = new_console_key("demo", "operator")
    workdir, port = system.workdir, free_port()
    console_process = ManagedProcess(
        "console",
        "console",
        env={
            "CONSOLE_SERVICEBUS_CONNECTION_STRING": system.connection_string,
            "CONSOLE_PORT": str(port),
            "CONSOLE_OUTBOX_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'producer-outbox.db'}",
            "CONSOLE_AUDIT_STORE_URL": f"sqlite+aiosqlite:///{system.consumer_db}",
            "CONSOLE_API_KEYS": str(entry),
            "CONSOLE_TRACE_FILES": f"{workdir / 'producer-telemetry.jsonl'},"
            f"{workdir / 'consumer-telemetry.jsonl'}",
        },
        log_dir=workdir,
    )
    system.processes.append(console_process)
    system.console_url, system.console_key = f"http://127.0.0.1:{port}", key
    console_process.wait_http_ok(f"{system.console_url}/healthz")


_T = TypeVar("_T")


def run_fast(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` on uvloop when installed (as the producer and consumer do), so
    the driver's own share of the machine stays small."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - not on Windows or PyPy
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def send_all(system: System, requests: list[Request], concurrency: int) -> Outcome:
    """POST every request over ``concurrency`` keep-alive connections, showing a progress
    bar; each answer is checked against the status the workload expects."""
    outcome = Outcome()
    payloads = [
        build_post(system.host, system.port, r.path, r.body, system.headers) for r in requests
    ]
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("HTTP requests", total=len(requests))

        def record(index: int, answer: Answer) -> None:
            request = requests[index]
            outcome.sent += 1
            if answer.status == 202:
                event_id = json.loads(answer.body)["id"]
                outcome.accepted[event_id] = request.kind
                if request.dead_letter:
                    outcome.dead_letter[event_id] = request.dead_letter
            elif answer.status:
                outcome.rejected[answer.status] += 1
            if answer.status != request.expect:
                outcome.unexpected.append(f"{request.path} -> {answer.status or answer.error}")
            progress.advance(task)

        started = time.monotonic()
        await post_all(
            system.host, system.port, payloads, concurrency=concurrency, on_answer=record
        )
        outcome.send_seconds = time.monotonic() - started
    return outcome


def inject_poison(bus: ServiceBusWatch, poison: list[Poison]) -> None:
    """Send ``poison`` straight to the queues, as a foreign producer would."""
    for queue in sorted({p.queue for p in poison}):
        bus.send(
            queue,
            [
                ServiceBusMessage(p.body, message_id=p.message_id, content_type=p.content_type)
                for p in poison
                if p.queue == queue
            ],
        )


def _percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100)[q - 1]


def _end_to_end(runs: list[Processing]) -> dict[str, Any]:
    """Processed events per second from the first acceptance to the last processing
    (the producer's and the consumer's own UTC timestamps; start-up is not in it)."""
    if not runs:
        return {"seconds": 0.0, "events_per_second": 0.0}
    first = min(run.accepted_at for run in runs)
    last = max(run.done_at for run in runs)
    seconds = (last - first).total_seconds()
    return {
        "first_accepted_at": first.isoformat(),
        "last_processed_at": last.isoformat(),
        "seconds": seconds,
        "events_per_second": len(runs) / seconds if seconds > 0 else 0.0,
    }


def summary(
    outcome: Outcome,
    done: dict[str, Processing],
    dead: dict[str, str],
    stats: dict[str, int],
    unaccounted: int,
    wrong_reason: int,
    unexpected_dead: int,
    deliveries: list[dict[str, object]],
) -> tuple[Table, dict[str, Any]]:
    """The summary table, and the same figures as a JSON-ready dict (latencies in ms,
    rates per second, times ISO 8601 UTC)."""
    runs = [done[i] for i in outcome.accepted if i in done]
    latencies = [run.seconds for run in runs]
    latency_ms = {f"p{q}": _percentile(latencies, q) * 1000 for q in (50, 95, 99)}
    http_rate = outcome.sent / outcome.send_seconds if outcome.send_seconds else 0.0
    end_to_end = _end_to_end(runs)
    kinds = Counter(kind for event_id, kind in outcome.accepted.items() if event_id in done)
    dead_reasons = Counter(dead.values())
    figures: dict[str, Any] = {
        "requests_sent": outcome.sent,
        "accepted": len(outcome.accepted),
        "rejected": {str(code): n for code, n in sorted(outcome.rejected.items())},
        "unexpected_status": len(outcome.unexpected),
        "published": stats.get("published"),
        "processed": len(runs),
        "audit_events_stored": kinds["audit"],
        "notifications_delivered": kinds["notification"],
        "dead_lettered": dict(sorted(dead_reasons.items())),
        "accepted_meant_to_dead_letter": len(outcome.dead_letter),
        "meant_to_dead_letter_but_not": wrong_reason,
        "dead_lettered_though_valid": unexpected_dead,
        "unaccounted": unaccounted,
        "latency_ms": latency_ms,
        "http_phase": {
            "seconds": outcome.send_seconds,
            "requests_per_second": http_rate,
        },
        "end_to_end": end_to_end,
    }
    table = Table(title="Summary", show_header=False)
    rows: list[tuple[str, object]] = [
        ("requests sent", outcome.sent),
        ("accepted (202)", len(outcome.accepted)),
        ("rejected", ", ".join(f"{n} x {code}" for code, n in outcome.rejected.items()) or 0),
        ("unexpected status", len(outcome.unexpected)),
        ("published by producer", stats.get("published", "?")),
        ("processed", len(runs)),
        ("  audit events stored", kinds["audit"]),
        ("  notifications delivered", kinds["notification"]),
        ("    e-mails rendered from a template", by_template(deliveries, "email")),
        ("    webhooks carrying a template id", by_template(deliveries, "webhook")),
        (
            "    with a plain body",
            sum(1 for entry in deliveries if not entry.get("template")),
        ),
        ("dead-lettered", len(dead)),
        *[(f"  {reason}", n) for reason, n in sorted(dead_reasons.items())],
        ("  accepted events the workload meant to dead-letter", len(outcome.dead_letter)),
        ("meant to be dead-lettered but wrong reason or processed", wrong_reason),
        ("dead-lettered though valid", unexpected_dead),
        ("unaccounted", unaccounted),
        (
            "latency p50 / p95 / p99 (accepted -> processed)",
            " / ".join(f"{value:.0f}" for value in latency_ms.values()) + " ms",
        ),
        ("HTTP phase (first request -> last answer)", f"{http_rate:.0f} req/s"),
        (
            "end-to-end rate (first accepted -> last processed)",
            f"{end_to_end['events_per_second']:.0f} events/s",
        ),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    return table, figures


def wait_for_stop_signal() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM; the previous handlers are restored after."""
    stop = threading.Event()
    previous = {
        number: signal.signal(number, lambda *_: stop.set())
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        while not stop.wait(1):
            pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@app.command()
def main(
    requests: Annotated[int, typer.Option(min=1, help="HTTP requests to send.")] = 1200,
    poison: Annotated[int, typer.Option(min=0, help="Poison messages to inject.")] = 25,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 32,
    seed: Annotated[int, typer.Option(help="Workload random seed.")] = 7,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for processing.")] = 180,
    run_dir: Annotated[Path | None, typer.Option(help="Where data, logs and traces go.")] = None,
    summary_json: Annotated[
        Path | None,
        typer.Option(help="Also write the summary's figures to this JSON file."),
    ] = None,
    keep_running: Annotated[
        bool,
        typer.Option(
            help="After the summary, keep everything up (to use the console) until Ctrl-C "
            "or SIGTERM."
        ),
    ] = False,
) -> None:
    """Run emulator, consumer and producer; drive them; print what happened."""
    if summary_json is not None and not summary_json.parent.is_dir():
        raise typer.BadParameter(
            f"directory {summary_json.parent} does not exist", param_hint="'--summary-json'"
        )
    started = time.monotonic()
    workdir = run_dir or ROOT / ".run" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    processes: list[ManagedProcess] = []
    figures: dict[str, Any] = {}
    ok = False
    try:
        with console.status("starting emulator, consumer, producer and console"):
            system = start_system(workdir, processes)
        console.print(f"[green]up[/] in {time.monotonic() - started:.1f}s; logs in {workdir}")
        console.print(
            f"operations console: {system.console_url} (API key {system.console_key}); "
            "it stops with the run"
        )
        workload = Workload(seed)
        outcome = run_fast(send_all(system, workload.requests(requests), concurrency))
        poison_messages = workload.poison(*QUEUES, poison)
        poison_dead = {p.message_id: p.reason for p in poison_messages}
        expected_dead = {**poison_dead, **outcome.dead_letter}

        with (
            ServiceBusWatch(system.connection_string, QUEUES) as bus,
            ConsumerTables(system.consumer_db) as tables,
        ):
            inject_poison(bus, poison_messages)
            deadline = time.monotonic() + timeout
            with console.status("waiting for the consumer") as status:
                while True:
                    done = tables.processed()
                    dead = bus.dead_letters()
                    missing = [i for i in outcome.accepted if i not in done and i not in dead]
                    missing += [i for i in poison_dead if i not in dead]
                    total = len(outcome.accepted) + len(poison_dead)
                    status.update(
                        f"waiting for the consumer: {total - len(missing)}/{total} settled"
                    )
                    if not missing or time.monotonic() > deadline:
                        break
                    time.sleep(0.25)
        stats = httpx.get(f"{system.base_url}/v1/stats", headers=system.headers).json()
        wrong_reason = sum(
            1 for i, r in expected_dead.items() if i in done or (i in dead and dead[i] != r)
        )
        unexpected_dead = [i for i in outcome.accepted if i in dead and i not in expected_dead]
        deliveries = delivery_log(system.delivery_log)
        table, figures = summary(
            outcome,
            done,
            dead,
            stats,
            len(missing),
            wrong_reason,
            len(unexpected_dead),
            deliveries,
        )
        console.print(table)
        for line in outcome.unexpected[:10]:
            console.print(f"[red]unexpected answer[/] {line}")
        for event_id in missing[:10]:
            console.print(f"[red]unaccounted[/] {event_id}")
        for event_id in unexpected_dead[:10]:
            console.print(f"[red]dead-lettered though valid[/] {event_id}: {dead[event_id]}")
        ok = not missing and not wrong_reason and not unexpected_dead and not outcome.unexpected
        if keep_running:
            console.print(
                f"still running: operations console {system.console_url} "
                f"(API key {system.console_key}); Ctrl-C stops everything"
            )
            wait_for_stop_signal()
    finally:
        with console.status("stopping"):
            codes = {p.name: p.stop() for p in reversed(processes)}
        console.print("exit codes: " + ", ".join(f"{n}={c}" for n, c in codes.items()))
        ok = ok and not any(codes.values())
    # After the consumer stopped: each delivered row has its line, once.
    log_problem = check_delivery_log(system.delivery_log, system.consumer_db) if ok else None
    if log_problem:
        console.print(f"[red]{log_problem}[/] ({system.delivery_log})")
        ok = False
    elif ok:
        console.print(f"delivery log: one line per delivered notification ({system.delivery_log})")
    console.print(f"total {time.monotonic() - started:.1f}s")
    if summary_json is not None:
        figures.update(exit_codes=codes, delivery_log_problem=log_problem, ok=ok)
        summary_json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
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
