"""The real ``python -m consumer`` process: SIGTERM under load, health, audit CLI."""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
from azure.servicebus.aio import ServiceBusClient

from contracts.servicebus import to_servicebus_message
from tests.conftest import AUDIT_QUEUE, NOTIFICATIONS_QUEUE
from tests.consumer.conftest import (
    WebhookReceiver,
    audit_envelope,
    eventually,
    notification_envelope,
    send,
)
from tools.processes import ROOT, free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def start_consumer(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumer",
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def test_sigterm_under_load_loses_nothing_and_repeats_nothing(
    sb: ServiceBusClient,
    connection_string: str,
    webhook_receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    audit_db = tmp_path / "consumer.db"
    health_port = free_port()
    env = {
        "CONSUMER_SERVICEBUS_CONNECTION_STRING": connection_string,
        "CONSUMER_AUDIT_STORE_URL": f"sqlite+aiosqlite:///{audit_db}",
        "CONSUMER_DELIVERY_LOG_PATH": str(tmp_path / "deliveries.jsonl"),
        "CONSUMER_DELIVERY_MODE": "live",
        "CONSUMER_WEBHOOK_SECRET": SECRET,
        "CONSUMER_WEBHOOK_ALLOW_HTTP": "true",
        "CONSUMER_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "CONSUMER_MAX_WAIT_TIME": "0.5",
        "CONSUMER_BUSY_WAIT_TIME": "0.1",
        "CONSUMER_NOTIFICATIONS_CONCURRENCY": "4",
        "CONSUMER_AUDIT_MAX_DELIVERY_COUNT": "3",
        "CONSUMER_NOTIFICATIONS_MAX_DELIVERY_COUNT": "3",
        "CONSUMER_HEALTH_HOST": "127.0.0.1",
        "CONSUMER_HEALTH_PORT": str(health_port),
        "CONSUMER_SHUTDOWN_GRACE_PERIOD": "20",
    }
    webhook_receiver.delay = 0.2  # each delivery takes a while: SIGTERM finds work in flight
    notifications = [
        notification_envelope("webhook", f"{webhook_receiver.base_url}/hooks/{n}")
        for n in range(40)
    ]
    audits = [audit_envelope() for _ in range(30)]
    await send(sb, NOTIFICATIONS_QUEUE, *(to_servicebus_message(e) for e in notifications))
    await send(sb, AUDIT_QUEUE, *(to_servicebus_message(e) for e in audits))

    first = await start_consumer(env, tmp_path / "consumer-1.log")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health_port}", timeout=2) as http:

        async def ready() -> bool:
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready)

    async def some_delivered() -> bool:
        return len(webhook_receiver.requests) >= 8

    await eventually(some_delivered)
    first.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(first.wait(), 40) == 0
    delivered_before = len(webhook_receiver.requests)
    assert delivered_before < len(notifications)  # the restart has work left

    second = await start_consumer(env, tmp_path / "consumer-2.log")

    async def all_delivered() -> bool:
        ids = {headers["webhook-id"] for _, headers, _ in webhook_receiver.requests}
        return ids == {e.id for e in notifications}

    await eventually(all_delivered, within=60)

    def stored() -> set[str]:
        with sqlite3.connect(audit_db) as connection:
            return {row[0] for row in connection.execute("SELECT event_id FROM audit_events")}

    async def all_stored() -> bool:
        return await asyncio.to_thread(stored) == {e.id for e in audits}

    await eventually(all_stored)
    second.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(second.wait(), 40) == 0

    per_event = Counter(headers["webhook-id"] for _, headers, _ in webhook_receiver.requests)
    assert set(per_event.values()) == {1}, per_event.most_common(3)  # nothing twice
    with sqlite3.connect(audit_db) as connection:
        [(delivered,)] = connection.execute(
            "SELECT count(*) FROM deliveries WHERE status = 'delivered'"
        ).fetchall()
    assert delivered == len(notifications)

    verify = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "consumer", "audit", "verify"],
        cwd=ROOT,
        env={**os.environ, "CONSUMER_AUDIT_STORE_URL": f"sqlite+aiosqlite:///{audit_db}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert "30 record(s), chain intact" in verify.stdout

    with sqlite3.connect(audit_db) as connection:
        connection.execute("UPDATE audit_events SET actor_id = 'mallory' WHERE seq = 7")
    tampered = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "consumer",
            "audit",
            "verify",
            "--store-url",
            f"sqlite+aiosqlite:///{audit_db}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tampered.returncode == 1
    assert "TAMPERED: record seq 7" in tampered.stderr
