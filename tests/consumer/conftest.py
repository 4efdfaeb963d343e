"""Fixtures for consumer tests: Service Bus client, stores, SMTP and webhook servers."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from consumer.retry import RetryPolicy
from consumer.runtime.processor import QueueConfig
from consumer.runtime.routing import Route, Router
from consumer.runtime.stats import QueueStats
from consumer.runtime.worker import Worker
from consumer.stores.database import Database
from contracts import (
    AUDIT_EVENT_TYPE,
    NOTIFICATION_EVENT_TYPE,
    AuditEnvelope,
    AuditEvent,
    NotificationEnvelope,
    NotificationEvent,
    new_envelope,
)
from tests.conftest import AUDIT_QUEUE, NOTIFICATIONS_QUEUE
from tools.processes import free_port

PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

FAST = RetryPolicy(
    immediate_attempts=0,
    delayed_attempts=0,
    immediate_initial_delay=0.01,
    delayed_initial_delay=0.2,
    delayed_jitter=0.05,
)


def audit_envelope(action: str = "user.login", actor: str = "u-1") -> AuditEnvelope:
    event = AuditEvent(
        actor={"id": actor},
        action=action,
        resource={"type": "session", "id": "s-1"},
        outcome="success",
        occurred_at=datetime.now(UTC),
    )
    return new_envelope(event, source="/tests")


def notification_envelope(
    channel: str = "webhook", recipient: str = "https://hooks.example.com/x", **fields: Any
) -> NotificationEnvelope:
    values: dict[str, Any] = {"subject": "Hello", "body": "b", **fields}
    if "template" in values:
        values.pop("body")
    event = NotificationEvent(channel=channel, recipient=recipient, **values)
    return new_envelope(event, source="/tests")


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30) -> None:
    """Poll ``check`` until true; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def sb(connection_string: str) -> AsyncIterator[ServiceBusClient]:
    async with ServiceBusClient.from_connection_string(connection_string) as client:
        yield client


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}")
    await database.migrate()
    yield database
    await database.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards (skips without PostgreSQL)."""
    name = f"consumer_test_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- Service Bus helpers -----------------------------------------------------------------


async def send(sb: ServiceBusClient, queue: str, *messages: ServiceBusMessage) -> None:
    async with sb.get_queue_sender(queue) as sender:
        await sender.send_messages(list(messages))


async def dead_letters(
    sb: ServiceBusClient, queue: str, count: int, within: float = 30
) -> list[ServiceBusReceivedMessage]:
    """Receive (and complete) ``count`` dead letters, waiting up to ``within`` seconds."""
    received: list[ServiceBusReceivedMessage] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with sb.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        while len(received) < count and loop.time() < deadline:
            batch = await dlq.receive_messages(max_message_count=count, max_wait_time=1)
            for message in batch:
                await dlq.complete_message(message)
            received.extend(batch)
    return received


def queue_config(name: str, **overrides: Any) -> QueueConfig:
    values: dict[str, Any] = {
        "name": name,
        "concurrency": 4,
        "max_wait_time": 0.5,
        "busy_wait_time": 0.1,
        "max_delivery_count": 3,
        "max_processing_time": 30,
    }
    values.update(overrides)
    return QueueConfig(**values)


class RunningWorker:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(worker.run(self.stop))

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 40)

    def stats(self, queue: str = AUDIT_QUEUE) -> QueueStats:
        return self.worker.stats.queue(queue)


StartWorker = Callable[..., RunningWorker]


@pytest.fixture
async def start_worker(sb: ServiceBusClient) -> AsyncIterator[StartWorker]:
    """``start_worker(routes_or_router, **queue_overrides)`` runs a worker on both queues."""
    running: list[RunningWorker] = []

    def start(
        routes: dict[str, Route] | Router,
        *,
        grace: float = 20.0,
        **overrides: Any,
    ) -> RunningWorker:
        router: Router
        if isinstance(routes, dict):
            table = routes

            def router(envelope: Any) -> Route | None:
                return table.get(envelope.type)

        else:
            router = routes
        configs = [
            queue_config(AUDIT_QUEUE, event_types=frozenset({AUDIT_EVENT_TYPE}), **overrides),
            queue_config(
                NOTIFICATIONS_QUEUE, event_types=frozenset({NOTIFICATION_EVENT_TYPE}), **overrides
            ),
        ]
        item = RunningWorker(Worker(sb, configs, router, shutdown_grace_period=grace))
        running.append(item)
        return item

    yield start
    for item in running:
        if not item.task.done():
            await item.shutdown()


# -- SMTP --------------------------------------------------------------------------------


@dataclass
class SmtpServer:
    host: str
    port: int
    messages: list[Envelope] = field(default_factory=list)


class _Recorder:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("busy@"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._server.messages.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """An aiosmtpd server on loopback that records messages.

    Recipients ``nobody@...`` get 550, ``busy@...`` get 451.
    """
    server = SmtpServer("127.0.0.1", free_port())
    controller = Controller(_Recorder(server), hostname=server.host, port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


# -- webhooks ----------------------------------------------------------------------------


@dataclass
class WebhookReceiver:
    base_url: str
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    status_by_path: dict[str, list[int]] = field(default_factory=dict)
    """Path -> statuses to answer in turn (the last repeats); 200 when absent."""
    delay: float = 0.0

    def received(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(headers, body) for p, headers, body in self.requests if p == path]


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    """An HTTP server on loopback recording every request (path, headers, body)."""
    receiver = WebhookReceiver("")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        receiver.requests.append((request.path, dict(request.headers), body))
        if receiver.delay:
            await asyncio.sleep(receiver.delay)
        statuses = receiver.status_by_path.get(request.path, [200])
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return web.Response(status=status, text="ok" if status < 300 else "no")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    receiver.base_url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A consumer store URL, once on SQLite and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def database(store_url: str) -> AsyncIterator[Database]:
    """The migrated store at ``store_url`` (migrating twice: it must be idempotent)."""
    db = Database(store_url)
    await db.migrate()
    await db.migrate()
    yield db
    await db.close()
