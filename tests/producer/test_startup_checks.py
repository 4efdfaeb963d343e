"""Queues are checked at start-up: a missing one stops the producer; an unreachable Service
Bus does not (the outbox keeps what is accepted); ``/readyz`` reports a queue gone later."""

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from contracts import AuditEvent
from producer import ProducerSettings
from producer.bootstrap import open_event_publisher
from producer.errors import MissingQueueError
from tests.producer.conftest import AUDIT, unreachable_connection_string
from tools.processes import ROOT


async def test_a_missing_queue_stops_the_start(
    shared_connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> None:
    settings = make_settings(shared_connection_string, notifications_queue="no-such-queue")

    with pytest.raises(MissingQueueError) as raised:
        async with open_event_publisher(settings):
            pass

    assert raised.value.queue == "no-such-queue"
    assert raised.value.setting == "PRODUCER_NOTIFICATIONS_QUEUE"


async def test_an_unreachable_service_bus_does_not_stop_the_start(
    make_settings: Callable[..., ProducerSettings],
) -> None:
    settings = make_settings(unreachable_connection_string())

    async with open_event_publisher(settings) as publisher:
        accepted = await publisher.publish(AuditEvent.model_validate(AUDIT))

        assert (await publisher.get(accepted.id)).status.value == "accepted"


async def test_readiness_reports_a_queue_that_does_not_exist(
    shared_connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> None:
    settings = make_settings(shared_connection_string, audit_queue="deleted-later")

    async with open_event_publisher(settings, check_queues=False) as publisher:
        await publisher.publish(AuditEvent.model_validate(AUDIT))
        deadline = time.monotonic() + 30
        readiness = await publisher.readiness()
        while readiness.checks["queues"].ok and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            readiness = await publisher.readiness()

    assert not readiness.ready
    assert readiness.checks["queues"].details["missing"] == ["deleted-later"]
    assert "deleted-later" in readiness.checks["queues"].details["hint"]


def test_the_cli_exits_1_with_one_line_naming_the_queue(
    shared_connection_string: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "producer"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PRODUCER_SERVICEBUS_CONNECTION_STRING": shared_connection_string,
            "PRODUCER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}",
            "PRODUCER_AUDIT_QUEUE": "audit-typo",
            "PRODUCER_LOG_LEVEL": "ERROR",
            "OTEL_SDK_DISABLED": "true",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "'audit-typo'" in line
    assert "PRODUCER_AUDIT_QUEUE" in line
    assert "az servicebus queue create" in line
