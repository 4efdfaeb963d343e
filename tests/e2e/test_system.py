"""The real processes: HTTP -> producer -> emulator -> consumer -> audit store."""

import hashlib
import json
import secrets
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from consumer.errors import ConsumerDeadLetterReason
from emulator.testing import run_emulator
from tests.conftest import queues_config
from tools.demo import QUEUES
from tools.processes import ROOT, ManagedProcess, free_port
from tools.workload import Workload

pytestmark = pytest.mark.e2e


API_KEY = secrets.token_urlsafe(32)
HEADERS = {"X-API-Key": API_KEY}


@pytest.fixture
def system(tmp_path: Path) -> Iterator[tuple[str, Path, list[ManagedProcess]]]:
    with run_emulator(queues_config()) as emulator:
        audit_db = tmp_path / "audit.db"
        port = free_port()
        consumer = ManagedProcess(
            "consumer",
            "consumer",
            env={
                "CONSUMER_SERVICEBUS_CONNECTION_STRING": emulator.connection_string,
                "CONSUMER_AUDIT_STORE_URL": f"sqlite+aiosqlite:///{audit_db}",
                "CONSUMER_MAX_WAIT_TIME": "0.5",
                "CONSUMER_HEALTH_PORT": "0",
                "CONSUMER_AUDIT_MAX_DELIVERY_COUNT": "3",
                "CONSUMER_NOTIFICATIONS_MAX_DELIVERY_COUNT": "3",
            },
            log_dir=tmp_path,
        )
        producer = ManagedProcess(
            "producer",
            "producer",
            env={
                "PRODUCER_SERVICEBUS_CONNECTION_STRING": emulator.connection_string,
                "PRODUCER_PORT": str(port),
                "PRODUCER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}",
                "PRODUCER_API_KEYS": "e2e:" + hashlib.sha256(API_KEY.encode()).hexdigest(),
            },
            log_dir=tmp_path,
        )
        processes = [producer, consumer]
        try:
            base_url = f"http://127.0.0.1:{port}"
            producer.wait_http_ok(f"{base_url}/healthz")
            yield base_url, audit_db, processes
        finally:
            for process in processes:
                process.stop()


def stored_actions(audit_db: Path) -> dict[str, str]:
    if not audit_db.exists():
        return {}
    with sqlite3.connect(audit_db) as db:
        try:
            return dict(db.execute("SELECT event_id, action FROM audit_events").fetchall())
        except sqlite3.OperationalError:  # table not created yet
            return {}


def test_http_event_reaches_the_audit_store(
    system: tuple[str, Path, list[ManagedProcess]],
) -> None:
    base_url, audit_db, processes = system
    accepted = {}
    for n in range(10):
        response = httpx.post(
            f"{base_url}/v1/audit-events",
            json={
                "actor": {"id": f"u-{n}"},
                "action": "document.share",
                "resource": {"type": "document", "id": f"doc-{n}"},
                "outcome": "success",
                "occurred_at": "2026-11-21T12:00:00Z",
            },
            headers=HEADERS,
        )
        assert response.status_code == 202
        accepted[response.json()["id"]] = "document.share"

    deadline = time.monotonic() + 60
    while stored_actions(audit_db) != accepted and time.monotonic() < deadline:
        time.sleep(0.2)

    assert stored_actions(audit_db) == accepted
    unauthenticated = httpx.post(f"{base_url}/v1/audit-events", json={})
    assert unauthenticated.status_code == 401
    assert [process.stop() for process in processes] == [0, 0]  # clean SIGTERM shutdown


def test_make_run_driver_accounts_for_every_request(tmp_path: Path) -> None:
    requests, poison, seed = 200, 10, 7
    summary_path = tmp_path / "summary.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.demo",
            "--requests",
            str(requests),
            "--poison",
            str(poison),
            "--seed",
            str(seed),
            "--run-dir",
            str(tmp_path),
            "--summary-json",
            str(summary_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK: every accepted event was processed" in result.stderr
    # What the workload asked for, request by request, as the demo generated it.
    workload = Workload(seed)
    sent = workload.requests(requests)
    rejected = sum(1 for r in sent if r.expect == 422)
    missing_template = sum(1 for r in sent if r.dead_letter)
    audit = sum(1 for r in sent if r.kind == "audit")
    accepted = requests - rejected
    expected_dead = Counter(p.reason for p in workload.poison(*QUEUES, poison))
    expected_dead[ConsumerDeadLetterReason.TEMPLATE_NOT_FOUND.value] += missing_template
    assert rejected
    assert missing_template

    summary = json.loads(summary_path.read_text())
    assert summary["ok"] is True
    assert summary["exit_codes"] == {"producer": 0, "consumer": 0, "emulator": 0, "console": 0}
    assert summary["requests_sent"] == requests
    assert summary["rejected"] == {"422": rejected}
    assert summary["unexpected_status"] == 0
    assert summary["accepted"] == summary["published"] == accepted
    assert summary["accepted_meant_to_dead_letter"] == missing_template
    assert summary["processed"] == accepted - missing_template
    assert summary["audit_events_stored"] == audit
    assert summary["notifications_delivered"] == accepted - audit - missing_template
    assert summary["dead_lettered"] == dict(expected_dead)
    assert summary["unaccounted"] == summary["dead_lettered_though_valid"] == 0
    assert summary["meant_to_dead_letter_but_not"] == 0
    # End to end runs from the first acceptance to the last processing (not from start-up),
    # by the consumer's own records.
    runs = processing_times(tmp_path / "consumer.db")
    assert len(runs) == summary["processed"]
    first = min(accepted_at for accepted_at, _ in runs)
    last = max(done for _, done in runs)
    assert summary["end_to_end"]["first_accepted_at"] == first.isoformat()
    assert summary["end_to_end"]["last_processed_at"] == last.isoformat()
    assert summary["end_to_end"]["events_per_second"] == pytest.approx(
        len(runs) / (last - first).total_seconds()
    )
    http = summary["http_phase"]
    assert http["requests_per_second"] == pytest.approx(requests / http["seconds"])
    assert set(summary["latency_ms"]) == {"p50", "p95", "p99"}


def processing_times(consumer_db: Path) -> list[tuple[datetime, datetime]]:
    """(accepted at, processed at) of each stored audit event and delivered notification."""
    with sqlite3.connect(consumer_db) as db:
        rows = db.execute(
            "SELECT accepted_at, recorded_at FROM audit_events UNION ALL "
            "SELECT accepted_at, delivered_at FROM deliveries WHERE status = 'delivered'"
        ).fetchall()
    return [(utc(accepted), utc(done)) for accepted, done in rows]


def utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
