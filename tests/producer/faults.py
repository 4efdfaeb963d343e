"""Machinery for the fault tests: real processes, a steady load, a queue watcher, a tally.

Nothing here asserts on time: waits poll with deadlines, and pacing only keeps the load
steady on a small machine.
"""

import asyncio
import itertools
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from azure.servicebus import ServiceBusClient, ServiceBusReceiveMode
from azure.servicebus.exceptions import ServiceBusError

from tests.conftest import AUDIT_QUEUE, queues_config, report_line
from tests.producer.conftest import AUDIT, Caller
from tools.processes import ManagedProcess, free_port


def poll(predicate: Callable[[], bool], *, timeout: float, every: float = 0.2) -> bool:
    """Call ``predicate`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


class Emulator:
    """``python -m emulator`` on a fixed port, so it can be stopped and started again.

    It keeps messages in memory only: whatever is on a queue when it stops is gone, so the
    tests drain the queue before stopping it. Duplicate detection keeps a 5-minute window.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.config = workdir / "servicebus.json"
        config = queues_config(LockDuration="PT30S", DuplicateDetectionHistoryTimeWindow="PT5M")
        self.config.write_text(json.dumps(config))
        self.process: ManagedProcess | None = None
        self.connection_string = ""
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.process = ManagedProcess(
            f"emulator-{self.starts}",
            "emulator",
            args=["--config", str(self.config), "--port", str(self.port), "--log-level", "WARNING"],
            log_dir=self.workdir,
            capture_stdout=True,
        )
        self.connection_string = self.process.read_line()

    def stop(self) -> None:
        if self.process is not None:
            self.resume()  # a frozen process would not act on the stop signal
            assert self.process.stop() == 0
            self.process = None

    def freeze(self) -> None:
        """Stop the process (SIGSTOP); returns once the kernel reports it stopped."""
        assert self.process is not None
        pid = self.process.process.pid
        os.kill(pid, signal.SIGSTOP)
        status = Path(f"/proc/{pid}/status")

        def stopped() -> bool:
            state = next(
                line for line in status.read_text().splitlines() if line.startswith("State:")
            )
            return state.split()[1] in {"T", "t"}

        assert poll(stopped, timeout=10, every=0.01)

    def resume(self) -> None:
        """Let a frozen process run again (SIGCONT; harmless if it is not frozen)."""
        if self.process is not None:
            os.kill(self.process.process.pid, signal.SIGCONT)


class Producer:
    """``python -m producer`` on a fixed port; can be killed with SIGKILL and restarted."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        *,
        connection_string: str,
        database_url: str,
        callers: list[Caller],
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "PRODUCER_SERVICEBUS_CONNECTION_STRING": connection_string,
            "PRODUCER_PORT": str(self.port),
            "PRODUCER_DATABASE_URL": database_url,
            "PRODUCER_API_KEYS": ",".join(str(c.entry) for c in callers),
            "PRODUCER_RELAY_LEASE": "5",
            "PRODUCER_RELAY_POLL_INTERVAL": "0.5",
            "PRODUCER_RELAY_BACKOFF_INITIAL": "0.2",
            "PRODUCER_RELAY_BACKOFF_MAX": "2",
            "PRODUCER_SERVICEBUS_OPERATION_TIMEOUT": "5",
            "PRODUCER_SHUTDOWN_GRACE": "3",
            "PRODUCER_LOG_LEVEL": "WARNING",
        }
        self.process: ManagedProcess | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.process = ManagedProcess(
            f"{self.name}-{self.starts}", "producer", env=self.env, log_dir=self.workdir
        )
        self.process.wait_http_ok(f"{self.base_url}/healthz", timeout=60)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.process is not None
        os.kill(self.process.process.pid, signal.SIGKILL)
        self.process.process.wait()
        self.process.stop()
        self.process = None

    def stop(self) -> int:
        code = self.process.stop() if self.process is not None else 0
        self.process = None
        return code

    def get(self, path: str, caller: Caller | None = None) -> httpx.Response:
        headers = caller.headers if caller is not None else {}
        return httpx.get(f"{self.base_url}{path}", headers=headers, timeout=10)

    def readiness(self) -> dict[str, Any]:
        """The ``/readyz`` body plus its ``http_status``."""
        response = self.get("/readyz")
        body: dict[str, Any] = response.json()
        body["http_status"] = response.status_code
        return body


@dataclass
class Load:
    """A steady stream of ``POST /v1/audit-events`` from a few workers in a thread.

    Attributes:
        accepted: Event id -> producer that answered 202.
        failures: What non-202 outcomes happened (status code or exception type).
    """

    targets: list[str]
    caller: Caller
    workers: int = 4
    pace: float = 0.02
    accepted: dict[str, str] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    _run: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._run.set()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._run.clear()
        time.sleep(0.5)  # pacing: let requests in flight finish before the caller drains

    def resume(self) -> None:
        self._run.set()

    def stop(self) -> None:
        self._stop.set()
        self._run.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def wait_for(self, count: int, timeout: float = 120) -> None:
        assert poll(lambda: self.count() >= count, timeout=timeout), (
            f"only {self.count()} accepted; failures {dict(self.failures)}"
        )

    async def _main(self) -> None:
        sequence = itertools.count()
        async with httpx.AsyncClient(timeout=10, headers=self.caller.headers) as client:
            await asyncio.gather(*(self._worker(client, sequence) for _ in range(self.workers)))

    async def _worker(self, client: httpx.AsyncClient, sequence: "itertools.count[int]") -> None:
        while not self._stop.is_set():
            if not self._run.is_set():
                await asyncio.sleep(0.05)
                continue
            n = next(sequence)
            target = self.targets[n % len(self.targets)]
            body = {**AUDIT, "resource": {"type": "invoice", "id": f"LOAD-{n}"}}
            try:
                response = await client.post(f"{target}/v1/audit-events", json=body)
            except httpx.HTTPError as exc:
                self.failures[type(exc).__name__] += 1
                await asyncio.sleep(0.1)
                continue
            if response.status_code == 202:
                with self._lock:
                    self.accepted[response.json()["id"]] = target
            else:
                self.failures[str(response.status_code)] += 1
            await asyncio.sleep(self.pace)


class Watcher:
    """Receives (receive-and-delete) everything on the audit queue and counts message ids.

    Survives the emulator going away: on an error it opens a new client and tries again.
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.seen: Counter[str] = Counter()
        self.empty_polls = 0
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        while not self._stop.is_set():
            try:
                with (
                    ServiceBusClient.from_connection_string(
                        self.emulator.connection_string, retry_total=0
                    ) as client,
                    client.get_queue_receiver(
                        AUDIT_QUEUE, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
                    ) as receiver,
                ):
                    while not self._stop.is_set():
                        batch = receiver.receive_messages(max_message_count=200, max_wait_time=1)
                        with self._lock:
                            self.seen.update(str(m.message_id) for m in batch)
                            if not batch:
                                self.empty_polls += 1
            except (ServiceBusError, OSError):
                self.errors += 1
                time.sleep(0.5)

    def received(self) -> set[str]:
        with self._lock:
            return set(self.seen)

    def has_all(self, ids: Mapping[str, str] | set[str]) -> bool:
        return set(ids) <= self.received()

    def settle(self, timeout: float = 30) -> None:
        """Wait for two more empty polls: anything already sent has been received."""
        with self._lock:
            target = self.empty_polls + 2
        poll(lambda: self.empty_polls >= target, timeout=timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@dataclass(frozen=True)
class Tally:
    """What the receiver saw against what the producer accepted."""

    accepted: int
    published: int
    lost: int
    duplicated: int
    unacknowledged: int

    @classmethod
    def of(cls, load: Load, watcher: Watcher) -> "Tally":
        accepted = set(load.accepted)
        seen = watcher.seen
        return cls(
            accepted=len(accepted),
            published=len(accepted & set(seen)),
            lost=len(accepted - set(seen)),
            duplicated=sum(count - 1 for count in seen.values() if count > 1),
            unacknowledged=len(set(seen) - accepted),
        )

    def report(self, scenario: str, **extra: object) -> None:
        details = "".join(f" {k}={v}" for k, v in extra.items())
        line = (
            f"[{scenario}] accepted={self.accepted} published={self.published} "
            f"lost={self.lost} duplicated={self.duplicated} "
            f"published-without-202={self.unacknowledged}{details}"
        )
        print("\n" + line, flush=True)
        report_line(line)
