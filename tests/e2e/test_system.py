"""The real processes: HTTP -> producer -> emulator -> consumer -> audit store."""

import hashlib
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from emulator.testing import run_emulator
from tests.conftest import queues_config
from tools.processes import ROOT, ManagedProcess, free_port

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


def test_make_run_driver_accounts_for_every_event(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.demo",
            "--requests",
            "80",
            "--poison",
            "6",
            "--run-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "unaccounted" in result.stderr
    assert "OK: every accepted event was processed" in result.stderr
