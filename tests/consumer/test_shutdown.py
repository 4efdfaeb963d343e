"""Shutdown ends by its deadline (CONSUMER_SHUTDOWN_GRACE_PERIOD), closes included.

Container Apps sends SIGTERM and kills the replica when its own grace period (30 s) is
over; a consumer that overruns is killed and its in-flight messages wait for their locks
to expire. These tests observe the mechanism (order of events, the deadline the worker
computed), never wall-clock durations.
"""

import asyncio
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus.aio import ServiceBusClient

from consumer.runtime.channel import ReceiverChannel
from contracts.servicebus import to_servicebus_message
from emulator.testing import run_emulator
from tests.conftest import NOTIFICATIONS_QUEUE, queues_config
from tests.consumer.conftest import StartWorker, eventually, notification_envelope, send
from tools.processes import ManagedProcess, free_port

Events = list[tuple[str, int]]


def wrap_close(monkeypatch: pytest.MonkeyPatch, before_real_close: Any) -> Events:
    """Make every receiver's close await ``before_real_close(channel)`` first; log events."""
    events: Events = []
    real_close = ReceiverChannel.close

    async def close(channel: ReceiverChannel) -> None:
        if channel.closed:
            return
        events.append(("start", id(channel)))
        try:
            await before_real_close(channel)
        except asyncio.CancelledError:
            events.append(("cancelled", id(channel)))
            raise
        await real_close(channel)
        events.append(("end", id(channel)))

    monkeypatch.setattr(ReceiverChannel, "close", close)
    return events


async def stop_and_mark_deadline(running: Any, events: Events) -> None:
    """Stop the worker; log ``deadline`` when its shutdown deadline comes; wait for it."""
    running.stop.set()

    async def deadline_set() -> bool:
        return running.worker.shutdown_deadline is not None

    await eventually(deadline_set)
    loop = asyncio.get_running_loop()
    marker = loop.call_at(running.worker.shutdown_deadline, events.append, ("deadline", 0))
    try:
        await asyncio.wait_for(running.task, 90)  # a guard against hanging, not a timing
    finally:
        marker.cancel()


async def test_receivers_close_at_once_within_the_grace_period(
    start_worker: StartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def slow(channel: ReceiverChannel) -> None:
        await asyncio.sleep(1.0)  # 16 such closes one after another: twice the grace period

    events = wrap_close(monkeypatch, slow)
    running = start_worker({}, grace=8.0, receivers=8)

    async def connected() -> bool:
        return running.worker.connected

    await eventually(connected)
    await stop_and_mark_deadline(running, events)

    kinds = [kind for kind, _ in events]
    assert kinds.count("start") == kinds.count("end") == 16  # both queues' receivers
    assert kinds.index("end") > max(i for i, kind in enumerate(kinds) if kind == "start")
    assert "deadline" not in kinds  # the worker returned before its deadline


async def test_a_close_that_hangs_is_given_up_at_the_deadline(
    start_worker: StartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    hung: list[ReceiverChannel] = []

    async def first_hangs(channel: ReceiverChannel) -> None:
        if not hung:
            hung.append(channel)
            await asyncio.Event().wait()

    events = wrap_close(monkeypatch, first_hangs)
    running = start_worker({}, grace=3.0, receivers=2)

    async def connected() -> bool:
        return running.worker.connected

    await eventually(connected)
    await stop_and_mark_deadline(running, events)

    assert ("cancelled", id(hung[0])) in events
    assert sum(kind == "end" for kind, _ in events) == 3  # every other receiver closed


@pytest.fixture
def silent_webhook() -> Iterator[socket.socket]:
    """A listening socket that never answers: a webhook handler stays in flight."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def test_consumer_process_exits_on_its_own_and_abandons_in_flight_messages(
    tmp_path: Path, silent_webhook: socket.socket
) -> None:
    """16 receivers per queue and a 3 s grace period: SIGTERM, exit 0, message back at once."""
    # A one-minute lock: the message comes back within the test only if it was abandoned.
    with run_emulator(queues_config(LockDuration="PT1M")) as emulator:
        port = free_port()
        consumer = ManagedProcess(
            "consumer",
            "consumer",
            env={
                "CONSUMER_SERVICEBUS_CONNECTION_STRING": emulator.connection_string,
                "CONSUMER_AUDIT_STORE_URL": f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}",
                "CONSUMER_DELIVERY_LOG_PATH": "",
                "CONSUMER_HEALTH_HOST": "127.0.0.1",
                "CONSUMER_HEALTH_PORT": str(port),
                "CONSUMER_RECEIVERS_PER_QUEUE": "16",
                "CONSUMER_SHUTDOWN_GRACE_PERIOD": "3",
                "CONSUMER_DELIVERY_MODE": "live",
                "CONSUMER_WEBHOOK_SECRET": "test-secret",
                "CONSUMER_WEBHOOK_ALLOW_HTTP": "true",
                "CONSUMER_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
                "CONSUMER_WEBHOOK_TIMEOUT": "120",
                "CONSUMER_LOG_FORMAT": "text",
            },
            log_dir=tmp_path,
        )
        try:
            consumer.wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout=120)
            host, hook_port = silent_webhook.getsockname()
            envelope = notification_envelope(recipient=f"http://{host}:{hook_port}/hook")

            async def publish() -> None:
                async with ServiceBusClient.from_connection_string(
                    emulator.connection_string
                ) as client:
                    await send(client, NOTIFICATIONS_QUEUE, to_servicebus_message(envelope))

            asyncio.run(publish())
            silent_webhook.settimeout(60)
            connection, _ = silent_webhook.accept()  # the handler is now waiting on us
        finally:
            exit_code = consumer.stop(timeout=120)  # SIGTERM; the timeout only guards a hang
        connection.close()
        log = consumer.log_path.read_text()

        async def redelivered() -> Any:
            async with (
                ServiceBusClient.from_connection_string(emulator.connection_string) as client,
                client.get_queue_receiver(NOTIFICATIONS_QUEUE) as receiver,
            ):
                return await receiver.receive_messages(max_wait_time=20)

        messages = asyncio.run(redelivered())

    assert exit_code == 0, log
    assert re.search(r"shutdown finished [\d.]+ s before its deadline", log), log
    [stopped] = re.findall(r"stopped: notifications (\{.*\})", log)
    assert json.loads(stopped)["abandoned"] == 1
    [message] = messages
    assert message.message_id == envelope.id
    assert message.delivery_count == 1  # abandoned once, not left to an expiring lock
