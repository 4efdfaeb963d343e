"""Producer test helpers: settings, API keys, databases, and a queue reader."""

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import EventEnvelope
from emulator.testing import run_emulator
from producer import ProducerSettings
from producer.apikeys import new_api_key
from producer.outbox.models import OutboxStatus
from producer.outbox.records import NewEvent
from producer.publisher import EventPublisher
from tests.conftest import AUDIT_QUEUE, queues_config

POSTGRES_ADMIN_URL = os.environ.get(
    "PRODUCER_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)

AUDIT = {
    "actor": {"id": "u-42", "type": "user", "display_name": "Grace Hopper"},
    "action": "invoice.approve",
    "resource": {"type": "invoice", "id": "INV-1042"},
    "outcome": "success",
    "occurred_at": "2026-11-21T09:30:00Z",
    "source_ip": "2001:db8::1",
    "user_agent": "pytest",
    "details": {"amount_cents": 129900},
}
NOTIFICATION = {
    "channel": "email",
    "recipient": "grace@example.com",
    "subject": "Invoice approved",
    "template": "invoice-approved",
    "parameters": {"invoice": "INV-1042"},
    "priority": "high",
}


class Caller:
    """An API key and the headers that present it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.key, self.entry = new_api_key(name)
        self.headers = {"X-API-Key": self.key}
        self.source = f"/producer/clients/{name}"


@pytest.fixture(scope="session")
def caller() -> Caller:
    return Caller("tester")


@pytest.fixture(scope="session")
def other_caller() -> Caller:
    return Caller("other")


@pytest.fixture(scope="module")
def shared_connection_string() -> Iterator[str]:
    """One emulator for a module whose tests never read the queues."""
    with run_emulator(queues_config()) as emulator:
        yield emulator.connection_string


@pytest.fixture
def make_settings(
    tmp_path: Path, caller: Caller, other_caller: Caller
) -> Callable[..., ProducerSettings]:
    """Settings for a test: its own SQLite outbox, the two callers' keys, short timeouts."""

    def make(connection_string: str, **overrides: Any) -> ProducerSettings:
        values: dict[str, Any] = {
            "servicebus_connection_string": connection_string,
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}",
            "api_keys": f"{caller.entry},{other_caller.entry}",
            "servicebus_operation_timeout": 10,
            "relay_poll_interval": 0.5,
            "relay_backoff_initial": 0.2,
            "relay_backoff_max": 2,
            "shutdown_grace": 2,
            **overrides,
        }
        return ProducerSettings(**values)

    return make


def unreachable_connection_string() -> str:
    """A connection string whose endpoint refuses connections (nothing listens there)."""
    from tools.processes import free_port

    return (
        f"Endpoint=sb://127.0.0.1:{free_port()};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
    )


def _admin(statement: str) -> None:
    async def run() -> None:
        engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(run())


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (dropped after); skips without a server."""
    name = f"producer_test_{uuid.uuid4().hex[:12]}"
    try:
        _admin(f'CREATE DATABASE "{name}"')
    except OSError as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database the outbox supports, one test run per kind."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def receive(
    connection_string: str, queue: str, count: int, *, timeout: float = 20.0
) -> list[ServiceBusReceivedMessage]:
    """Receive and complete until ``count`` messages arrived or ``timeout`` seconds passed."""
    received: list[ServiceBusReceivedMessage] = []
    deadline = time.monotonic() + timeout
    with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        client.get_queue_receiver(queue) as receiver,
    ):
        while len(received) < count and time.monotonic() < deadline:
            wait = max(0.1, min(2.0, deadline - time.monotonic()))
            for message in receiver.receive_messages(
                max_message_count=count - len(received), max_wait_time=wait
            ):
                receiver.complete_message(message)
                received.append(message)
    return received


def peek_all(connection_string: str, queue: str) -> list[ServiceBusReceivedMessage]:
    """Every message on ``queue`` (active or scheduled), without receiving it."""
    with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        client.get_queue_receiver(queue) as receiver,
    ):
        return list(receiver.peek_messages(max_message_count=250))


def outbox_row(envelope: EventEnvelope, queue: str = AUDIT_QUEUE) -> NewEvent:
    """The outbox row of ``envelope``, as the producer stores an accepted event."""
    return NewEvent(
        id=envelope.id,
        event_type=envelope.type,
        queue=queue,
        source=envelope.source,
        body=envelope.model_dump_json(exclude_none=True),
    )


def wait_until(predicate: Callable[[], bool], *, timeout: float = 20.0, every: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)


async def all_published(publisher: EventPublisher, ids: list[str]) -> bool:
    """Wait until every row is ``published`` (the fast path marks them after the send)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while loop.time() < deadline:
        records = [await publisher.get(i) for i in ids]
        if all(r.status is OutboxStatus.PUBLISHED for r in records):
            return True
        await asyncio.sleep(0.1)
    return False
