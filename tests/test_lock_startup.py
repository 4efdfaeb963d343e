"""The producer and the consumer start, from the locked environment, without a warning.

A fresh install once took SQLAlchemy 2.1, which the SQLAlchemy OpenTelemetry
instrumentation refuses: every process logged an ERROR at start. Here both processes run
with telemetry on (file exporter, so the instrumentations load), JSON logs, and must log
nothing at WARNING or above between start and a clean SIGTERM stop.
"""

import json
import re
from pathlib import Path

import pytest

from producer.apikeys import new_api_key
from tools.processes import ManagedProcess, free_port

pytestmark = pytest.mark.e2e

# Python's warnings module ("...: UserWarning: ...") and uvicorn's own "WARNING:" prefix.
PLAIN_WARNING = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|\w+Warning: ")


def _complaints(log: Path) -> list[str]:
    """Lines of ``log`` at WARNING or above, JSON log records or plain text."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if PLAIN_WARNING.search(line):
                found.append(line)
            continue
        if isinstance(record, dict) and record.get("level") in {"WARNING", "ERROR", "CRITICAL"}:
            found.append(line)
    return found


def _start(name: str, env: dict[str, str], tmp_path: Path) -> ManagedProcess:
    prefix = name.upper()
    return ManagedProcess(
        name,
        name,
        env={
            f"{prefix}_TELEMETRY_EXPORTER": "file",
            f"{prefix}_TELEMETRY_FILE": str(tmp_path / f"{name}-telemetry.jsonl"),
            f"{prefix}_LOG_FORMAT": "json",
            f"{prefix}_LOG_LEVEL": "INFO",
            **env,
        },
        log_dir=tmp_path,
    )


def test_producer_and_consumer_start_without_warnings(
    tmp_path: Path, connection_string: str
) -> None:
    _, api_key_entry = new_api_key("startup")
    producer_port, health_port = free_port(), free_port()
    producer = _start(
        "producer",
        {
            "PRODUCER_PORT": str(producer_port),
            "PRODUCER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}",
            "PRODUCER_API_KEYS": str(api_key_entry),
            "PRODUCER_SERVICEBUS_CONNECTION_STRING": connection_string,
        },
        tmp_path,
    )
    consumer = _start(
        "consumer",
        {
            "CONSUMER_HEALTH_HOST": "127.0.0.1",
            "CONSUMER_HEALTH_PORT": str(health_port),
            "CONSUMER_AUDIT_STORE_URL": f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}",
            "CONSUMER_DELIVERY_LOG_PATH": str(tmp_path / "deliveries.jsonl"),
            "CONSUMER_SERVICEBUS_CONNECTION_STRING": connection_string,
        },
        tmp_path,
    )
    try:
        producer.wait_http_ok(f"http://127.0.0.1:{producer_port}/readyz", timeout=60)
        consumer.wait_http_ok(f"http://127.0.0.1:{health_port}/readyz", timeout=60)
    finally:
        codes = {"producer": producer.stop(), "consumer": consumer.stop()}
    assert codes == {"producer": 0, "consumer": 0}
    for process in (producer, consumer):
        assert _complaints(process.log_path) == [], process.log_path.read_text()[-4000:]
