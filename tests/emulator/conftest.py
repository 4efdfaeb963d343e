"""Fixtures and helpers for the emulator's tests (all through the real azure-servicebus SDK)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

# The project's pytest plugin, as a consumer would load it (fixture and marker).
from emulator.pytest_plugin import pytest_configure, servicebus_emulator  # noqa: F401
from emulator.testing import EmulatorHandle, queue_config, run_emulator

T = TypeVar("T")

#: Queue used by most tests: short lock, low MaxDeliveryCount so redelivery tests are fast.
QUEUE = "q"
#: Lock duration of ``QUEUE`` in seconds.
LOCK_SECONDS = 1.0


def default_config() -> dict[str, Any]:
    """Queues ``q`` (1 s locks, MaxDeliveryCount 3), ``dedup`` (duplicate detection on)
    and ``long`` (60 s locks)."""
    config = queue_config(QUEUE, LockDuration="PT1S", MaxDeliveryCount=3)
    queues = config["UserConfig"]["Namespaces"][0]["Queues"]
    queues.append(
        {
            "Name": "dedup",
            "Properties": {
                "RequiresDuplicateDetection": True,
                "DuplicateDetectionHistoryTimeWindow": "PT1M",
            },
        }
    )
    queues.append({"Name": "long", "Properties": {"LockDuration": "PT1M"}})
    return config


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    """A fresh emulator with :func:`default_config`."""
    with run_emulator(default_config()) as handle:
        yield handle


@pytest.fixture
async def client(emulator: EmulatorHandle) -> AsyncIterator[ServiceBusClient]:
    """An async client connected to :func:`emulator`."""
    async with ServiceBusClient.from_connection_string(emulator.connection_string) as sb:
        yield sb


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 10.0, interval: float = 0.05
) -> T:
    """Await ``probe()`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(interval)


async def receive_n(
    receiver: ServiceBusReceiver, count: int, *, within: float = 10.0
) -> list[ServiceBusReceivedMessage]:
    """Receive exactly ``count`` messages, polling until ``within`` seconds have passed."""
    received: list[ServiceBusReceivedMessage] = []
    deadline = time.monotonic() + within
    while len(received) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"received {len(received)} of {count} messages within {within} s")
        batch = await receiver.receive_messages(
            max_message_count=count - len(received), max_wait_time=min(remaining, 1.0)
        )
        received.extend(batch)
    return received


async def receive_none(receiver: ServiceBusReceiver, wait: float = 0.5) -> None:
    """Assert that nothing is receivable within ``wait`` seconds."""
    batch = await receiver.receive_messages(max_message_count=10, max_wait_time=wait)
    assert [str(m) for m in batch] == []


def seq(message: ServiceBusReceivedMessage) -> int:
    """The message's sequence number (always set on received messages)."""
    assert message.sequence_number is not None
    return message.sequence_number


def server_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    """What the emulator's wire layer (logger ``emulator.server``) logged at ``level`` or above."""
    return [r for r in caplog.records if r.name == "emulator.server" and r.levelno >= level]


async def first_logged(caplog: pytest.LogCaptureFixture, level: int, within: float = 10.0) -> str:
    """The first emulator.server message at ``level`` or above, waiting for the reactor."""
    deadline = time.monotonic() + within
    while not server_records(caplog, level):
        assert time.monotonic() < deadline, "nothing logged in time"
        await asyncio.sleep(0.05)
    return server_records(caplog, level)[0].getMessage()
