"""Start-up checks: a consumer whose queue does not exist says so, and how to create it."""

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from azure.servicebus.aio import ServiceBusClient

from common.servicebus import how_to_create_queue
from consumer.handlers.audit import AuditHandler
from consumer.health import HealthServer
from consumer.runtime.entities import MissingQueueError, QueueEntity, check_queues
from consumer.runtime.routing import Route
from consumer.runtime.worker import Worker
from consumer.stores.audit import AuditStore
from consumer.stores.database import Database
from emulator.testing import EmulatorHandle, combine_configs, queue_config, run_emulator
from tests.consumer.conftest import FAST, eventually
from tests.consumer.conftest import queue_config as processing_config
from tools.processes import ROOT


def _run_consumer(emulator: EmulatorHandle, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``python -m consumer`` against ``emulator`` until it exits (its audit store in
    ``tmp_path``, no delivery log, any free health port)."""
    return subprocess.run(
        [sys.executable, "-m", "consumer"],
        cwd=ROOT,
        env={
            **os.environ,
            "CONSUMER_SERVICEBUS_CONNECTION_STRING": emulator.connection_string,
            "CONSUMER_AUDIT_STORE_URL": f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}",
            "CONSUMER_DELIVERY_LOG_PATH": "",
            "CONSUMER_HEALTH_PORT": "0",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_consumer_without_its_queue_exits_with_one_line_naming_it(tmp_path: Path) -> None:
    with run_emulator(queue_config("audit")) as emulator:  # no "notifications"
        result = _run_consumer(emulator, tmp_path)
    namespace = f"127.0.0.1:{emulator.port}"
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"consumer: error: queue 'notifications' (CONSUMER_NOTIFICATIONS_QUEUE) does not "
        f'exist in namespace {namespace}: add {{"Name": "notifications"}} to "Queues" '
        f"in the emulator's --config file (config/servicebus.json) and restart it, or set "
        f"CONSUMER_NOTIFICATIONS_QUEUE to a queue that exists"
    )


async def test_check_names_every_missing_queue_once(sb: ServiceBusClient) -> None:
    entities = [
        QueueEntity("audit", "CONSUMER_AUDIT_QUEUE"),
        QueueEntity("nowhere", "CONSUMER_AUDIT_QUEUE"),
        QueueEntity("gone", "CONSUMER_NOTIFICATIONS_QUEUE"),
    ]
    with pytest.raises(MissingQueueError) as raised:
        await check_queues(sb, entities)
    # Each missing queue once (not again for its dead-letter queue), in order.
    assert [line.split(" does not exist")[0] for line in raised.value.missing] == [
        "queue 'nowhere' (CONSUMER_AUDIT_QUEUE)",
        "queue 'gone' (CONSUMER_NOTIFICATIONS_QUEUE)",
    ]
    assert "\n" not in str(raised.value)
    await check_queues(sb, entities[:1])  # queues that exist pass


async def test_check_leaves_an_unreachable_namespace_to_the_receivers() -> None:
    # Nothing listens on the port: not a definite "not found", so start-up goes on and
    # the receivers' reconnect loop (and /readyz) take over.
    with run_emulator(queue_config("audit")) as emulator:
        connection_string = emulator.connection_string
    async with ServiceBusClient.from_connection_string(connection_string, retry_total=0) as client:
        await check_queues(client, [QueueEntity("audit", "CONSUMER_AUDIT_QUEUE")])


async def test_readyz_names_a_queue_that_does_not_exist(
    sb: ServiceBusClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="consumer.runtime.inflight")
    route = Route("audit", AuditHandler(AuditStore(db)), FAST)
    config = processing_config("audit-typo", setting="CONSUMER_AUDIT_QUEUE")
    worker = Worker(sb, [config], lambda envelope: route, shutdown_grace_period=5)
    health = HealthServer(worker, [("store", db.ping)], "127.0.0.1", 0)
    await health.start()
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    expected = (
        f"queue 'audit-typo' (CONSUMER_AUDIT_QUEUE) does not exist in namespace "
        f"{sb.fully_qualified_namespace}: "
        f"{how_to_create_queue(sb.fully_qualified_namespace, 'audit-typo')}, "
        f"or set CONSUMER_AUDIT_QUEUE to a queue that exists"
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health.port}") as http:

            async def reported() -> bool:
                response = await http.get("/readyz")
                return response.status_code == 503 and expected in response.json()["problems"]

            await eventually(reported)
        # The receiver backs off, logged under the module that does it (operators tune
        # loggers by module name).
        backing_off = [r for r in caplog.records if "; retrying in " in r.getMessage()]
        assert backing_off
        assert {r.name for r in backing_off} == {"consumer.runtime.inflight"}
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await health.stop()


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        (
            "mybus.servicebus.windows.net",
            "create it with `az servicebus queue create --resource-group <group> "
            "--namespace-name mybus --name audit`",
        ),
        (
            "gov-bus.servicebus.usgovcloudapi.net",
            "create it with `az servicebus queue create --resource-group <group> "
            "--namespace-name gov-bus --name audit`",
        ),
        (
            "127.0.0.1:41327",
            'add {"Name": "audit"} to "Queues" in the emulator\'s --config file '
            "(config/servicebus.json) and restart it",
        ),
    ],
)
def test_how_to_create_a_queue_depends_on_where_it_is_missing(
    namespace: str, expected: str
) -> None:
    assert how_to_create_queue(namespace, "audit") == expected


def test_consumer_whose_sessions_setting_disagrees_exits_with_one_line(tmp_path: Path) -> None:
    config = combine_configs(
        queue_config("audit", RequiresSession=True), queue_config("notifications")
    )
    with run_emulator(config) as emulator:
        result = _run_consumer(emulator, tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("consumer: error: "), last
    assert "CONSUMER_AUDIT_SESSIONS" in last, last
