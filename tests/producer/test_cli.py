"""``python -m producer``: migrate, new-api-key, and a graceful SIGTERM as a real process
(its shutdown deadline, and every log line in the configured format)."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect

from producer.apikeys import hash_api_key
from producer.outbox.database import create_outbox_engine, pending_migrations
from tests.conftest import AUDIT_QUEUE
from tests.producer.conftest import (
    AUDIT,
    NOTIFICATION,
    Caller,
    receive,
    unreachable_connection_string,
    wait_until,
)
from tools.processes import ROOT, ManagedProcess, free_port


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_creates_the_outbox(database_url: str) -> None:
    env = {
        "PRODUCER_DATABASE_URL": database_url,
        "PRODUCER_SERVICEBUS_CONNECTION_STRING": unreachable_connection_string(),
    }

    first, second = run_cli("migrate", env=env), run_cli("migrate", env=env)

    assert first.returncode == second.returncode == 0, first.stderr
    assert "up to date" in second.stdout

    async def check() -> set[str]:
        engine = create_outbox_engine(database_url)
        try:
            assert await pending_migrations(engine) is False
            async with engine.connect() as connection:
                return await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        finally:
            await engine.dispose()

    assert "producer_outbox" in asyncio.run(check())


def test_new_api_key_prints_a_key_and_its_entry() -> None:
    result = run_cli("new-api-key", "billing")

    assert result.returncode == 0
    key = result.stdout.splitlines()[0].rsplit(" ", 1)[1]
    entry = result.stdout.splitlines()[1].rsplit(" ", 1)[1]
    assert entry == f"billing:{hash_api_key(key)}"
    assert run_cli("new-api-key", "no spaces").returncode == 2


def test_bad_settings_exit_2_with_one_line() -> None:
    result = run_cli(
        env={
            "PRODUCER_SERVICEBUS_CONNECTION_STRING": unreachable_connection_string(),
            "PRODUCER_API_KEYS": "billing:not-a-hash",
        }
    )

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("producer: invalid settings: PRODUCER_API_KEYS: each API key entry")


@pytest.mark.e2e
def test_sigterm_leaves_unpublished_events_in_the_outbox(
    tmp_path: Path, connection_string: str, caller: Caller
) -> None:
    port = free_port()
    env = {
        "PRODUCER_PORT": str(port),
        "PRODUCER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}",
        "PRODUCER_API_KEYS": str(caller.entry),
        "PRODUCER_SHUTDOWN_GRACE": "2",
        "PRODUCER_SERVICEBUS_OPERATION_TIMEOUT": "30",
        "PRODUCER_RELAY_POLL_INTERVAL": "0.5",
    }
    base_url = f"http://127.0.0.1:{port}"
    down = ManagedProcess(
        "producer-down",
        "producer",
        env={**env, "PRODUCER_SERVICEBUS_CONNECTION_STRING": unreachable_connection_string()},
        log_dir=tmp_path,
    )
    try:
        down.wait_http_ok(f"{base_url}/healthz")
        ids = [
            httpx.post(f"{base_url}/v1/audit-events", json=AUDIT, headers=caller.headers).json()[
                "id"
            ]
            for _ in range(5)
        ]
    finally:
        # Publishes are stuck retrying; SIGTERM must still end the process cleanly and
        # within the grace periods (ManagedProcess.stop would SIGKILL after 30 s).
        assert down.stop(timeout=30) == 0
    up = ManagedProcess(
        "producer-up",
        "producer",
        env={**env, "PRODUCER_SERVICEBUS_CONNECTION_STRING": connection_string},
        log_dir=tmp_path,
    )
    try:
        up.wait_http_ok(f"{base_url}/healthz")
        messages = receive(connection_string, AUDIT_QUEUE, 5)
    finally:
        assert up.stop() == 0
    assert sorted(str(m.message_id) for m in messages) == sorted(ids)


@pytest.mark.e2e
def test_sigterm_shutdown_logs_json_lines_and_finishes_before_its_deadline(
    tmp_path: Path, connection_string: str, caller: Caller
) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    producer = ManagedProcess(
        "producer-json",
        "producer",
        env={
            "PRODUCER_SERVICEBUS_CONNECTION_STRING": connection_string,
            "PRODUCER_PORT": str(port),
            "PRODUCER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}",
            "PRODUCER_API_KEYS": str(caller.entry),
            "PRODUCER_LOG_FORMAT": "json",
            "PRODUCER_SHUTDOWN_GRACE": "3",
        },
        log_dir=tmp_path,
    )
    try:
        producer.wait_http_ok(f"{base_url}/healthz")
        ids = [
            httpx.post(f"{base_url}{path}", json=body, headers=caller.headers).json()["id"]
            for path, body in (("/v1/audit-events", AUDIT), ("/v1/notifications", NOTIFICATION))
        ]
        assert wait_until(
            lambda: all(
                httpx.get(f"{base_url}/v1/events/{i}", headers=caller.headers).json()["status"]
                == "published"
                for i in ids
            )
        )
    finally:
        code = producer.stop(timeout=30)

    assert code == 0
    lines = producer.log_path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # every line, uvicorn's included
    assert all({"time", "level", "logger", "trace_id"} <= record.keys() for record in records)
    messages = {record["message"]: record for record in records}
    assert any(m.startswith("Started server process") for m in messages), lines
    assert any(m.startswith("Finished server process") for m in messages), lines
    [finished] = [m for m in messages if m.startswith("shutdown finished")]
    assert "before its deadline (PRODUCER_SHUTDOWN_GRACE=3 s)" in finished
