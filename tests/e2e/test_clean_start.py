"""What a new user sees: the three processes started as the README shows, in the default
(development) mode, on loopback, ten requests, then SIGTERM.

Their stderr must be free of warnings and errors (a dependency an instrumentation refuses
logs an ERROR at start and silently turns the store spans off) and readable by a person:
about a line per request or delivery, no span or metric JSON.
"""

import hashlib
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tools.processes import ManagedProcess, emulator_config_path, free_port

pytestmark = pytest.mark.e2e

REQUESTS = 10
MAX_LINES = 60
"""Lines each process may write for start-up, ten requests or deliveries and shutdown."""

PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b|\w+Warning\b")
"""A log record at WARNING or above, a stack trace, or a Python warning (``...Warning:``)."""

SHOW_WARNINGS = {"PYTHONWARNINGS": "default"}
"""Python warnings (dependencies' deprecations included) shown, as with ``-W default``;
nothing else differs from a plain start."""

API_KEY = secrets.token_urlsafe(32)


@pytest.fixture
def system(tmp_path: Path) -> Iterator[tuple[str, dict[str, ManagedProcess]]]:
    """The emulator, the consumer and the producer as processes; the producer's base URL."""
    started: dict[str, ManagedProcess] = {}
    port = free_port()
    try:
        emulator = ManagedProcess(
            "emulator",
            "emulator",
            args=["--config", str(emulator_config_path()), "--port", "0"],
            env=SHOW_WARNINGS,
            log_dir=tmp_path,
            capture_stdout=True,
        )
        started["emulator"] = emulator
        connection_string = emulator.read_line(timeout=30)
        started["consumer"] = ManagedProcess(
            "consumer",
            "consumer",
            env={
                **SHOW_WARNINGS,
                "CONSUMER_SERVICEBUS_CONNECTION_STRING": connection_string,
                "CONSUMER_AUDIT_STORE_URL": f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}",
                "CONSUMER_HEALTH_PORT": "0",
            },
            log_dir=tmp_path,
        )
        started["producer"] = ManagedProcess(
            "producer",
            "producer",
            env={
                **SHOW_WARNINGS,
                "PRODUCER_SERVICEBUS_CONNECTION_STRING": connection_string,
                "PRODUCER_PORT": str(port),
                "PRODUCER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}",
                "PRODUCER_API_KEYS": "e2e:" + hashlib.sha256(API_KEY.encode()).hexdigest(),
            },
            log_dir=tmp_path,
        )
        yield f"http://127.0.0.1:{port}", started
    finally:
        for name in ("producer", "consumer", "emulator"):
            if name in started:
                started[name].stop()


def audit_event(n: int) -> dict[str, object]:
    return {
        "actor": {"id": f"u-{n}"},
        "action": "document.share",
        "resource": {"type": "document", "id": f"doc-{n}"},
        "outcome": "success",
        "occurred_at": "2026-11-21T12:00:00Z",
    }


def stderr(process: ManagedProcess) -> str:
    return process.log_path.read_text(encoding="utf-8", errors="replace")


def test_default_start_logs_no_warning_and_a_line_per_request(
    system: tuple[str, dict[str, ManagedProcess]],
) -> None:
    base_url, started = system
    producer, consumer = started["producer"], started["consumer"]
    producer.wait_http_ok(f"{base_url}/healthz", timeout=60)

    accepted = []
    for n in range(REQUESTS):
        response = httpx.post(
            f"{base_url}/v1/audit-events", json=audit_event(n), headers={"X-API-Key": API_KEY}
        )
        assert response.status_code == 202, response.text
        accepted.append(response.json()["id"])

    # Wait until the consumer's line for every delivery is there, then SIGTERM all three.
    deadline = time.monotonic() + 60
    while not all(f"audit {event_id} -> complete" in stderr(consumer) for event_id in accepted):
        assert time.monotonic() < deadline, stderr(consumer)
        time.sleep(0.2)
    # The emulator last, as an operator would: the clients must not see it go away.
    codes = {name: started[name].stop() for name in ("producer", "consumer", "emulator")}
    assert codes == {"emulator": 0, "consumer": 0, "producer": 0}

    for name, process in started.items():
        lines = stderr(process).splitlines()
        problems = [line for line in lines if PROBLEM.search(line)]
        assert problems == [], f"{name} stderr:\n" + "\n".join(lines)
        assert len(lines) <= MAX_LINES, f"{name} wrote {len(lines)} lines"
        blobs = [line for line in lines if line.lstrip().startswith(("{", "[", '"'))]
        assert blobs == [], f"{name} printed JSON:\n" + "\n".join(blobs[:20])
    # One line per request (method, route, status) and per delivery, each with its trace.
    requests = [line for line in stderr(producer).splitlines() if "POST /v1/audit-events" in line]
    assert len(requests) == REQUESTS
    assert all("-> 202" in line and "[trace=0 " not in line for line in requests)
    deliveries = [line for line in stderr(consumer).splitlines() if "process audit" in line]
    assert len(deliveries) == REQUESTS
