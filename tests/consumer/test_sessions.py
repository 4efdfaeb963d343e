"""Session-enabled sources: in order within a session, sessions side by side, the session
lock renewed, retries that keep the order, start-up checks of the sessions setting."""

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from azure.servicebus.aio import ServiceBusClient

from consumer.errors import TransientError
from consumer.retry import RetryPolicy
from consumer.runtime.entities import QueueEntity, SessionsMismatchError, check_queues
from consumer.runtime.routing import Route
from consumer.runtime.stats import QueueStats
from consumer.runtime.worker import Worker
from contracts import AUDIT_EVENT_TYPE, AuditEnvelope, EventEnvelope
from contracts.servicebus import to_servicebus_message
from emulator.testing import (
    combine_configs,
    queue_config,
    run_emulator,
    subscription_config,
    topic_config,
)
from tests.consumer.conftest import FAST, audit_envelope, eventually
from tests.consumer.conftest import queue_config as source_config

ORDERS = "orders"
PLAIN = "plain"
TOPIC = "events"
ORDERED = f"{TOPIC}/Subscriptions/ordered"


@pytest.fixture
def session_connection_string() -> Iterator[str]:
    config = combine_configs(
        queue_config(ORDERS, RequiresSession=True, LockDuration="PT2S", MaxDeliveryCount=5),
        queue_config(PLAIN),
        topic_config(TOPIC, subscription_config("ordered", RequiresSession=True)),
    )
    with run_emulator(config) as emulator:
        yield emulator.connection_string


@pytest.fixture
async def client(session_connection_string: str) -> AsyncIterator[ServiceBusClient]:
    async with ServiceBusClient.from_connection_string(session_connection_string) as sb:
        yield sb


def step(session: str, index: int) -> AuditEnvelope:
    return audit_envelope(action=f"{session}.i{index}")


async def send_sessions(
    client: ServiceBusClient, entity: str, sessions: list[str], per_session: int
) -> None:
    """``per_session`` messages for each session, interleaved, in one batch."""
    messages = [
        to_servicebus_message(step(session, index), session_id=session)
        for index in range(per_session)
        for session in sessions
    ]
    if entity.startswith(f"{TOPIC}/"):
        async with client.get_topic_sender(TOPIC) as sender:
            await sender.send_messages(messages)
    else:
        async with client.get_queue_sender(entity) as sender:
            await sender.send_messages(messages)


class Running:
    def __init__(self, client: ServiceBusClient, entity: str, handler: Any, policy: RetryPolicy):
        config = source_config(
            entity,
            event_types=frozenset({AUDIT_EVENT_TYPE}),
            sessions=True,
            max_concurrent_sessions=2,
            max_wait_time=0.5,
            max_delivery_count=5,
        )
        router = {AUDIT_EVENT_TYPE: Route("audit", handler, policy)}
        self.worker = Worker(
            client, [config], lambda e: router.get(e.type), shutdown_grace_period=10
        )
        self.stats: QueueStats = self.worker.stats.queue(entity)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.worker.run(self.stop))

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 40)


def action(envelope: EventEnvelope) -> tuple[str, int]:
    assert isinstance(envelope, AuditEnvelope)
    session, index = envelope.data.action.rsplit(".i", 1)
    return session, int(index)


@pytest.mark.parametrize("entity", [ORDERS, ORDERED])
async def test_in_order_per_session_with_sessions_side_by_side(
    client: ServiceBusClient, entity: str
) -> None:
    order: dict[str, list[int]] = defaultdict(list)
    started: set[str] = set()
    both_started = asyncio.Event()
    overlapped: list[bool] = []

    async def handler(envelope: EventEnvelope) -> None:
        session, index = action(envelope)
        if index == 0:
            # Each session's first message waits for the other session's: only two
            # sessions processed at once get past this.
            started.add(session)
            if len(started) == 2:
                both_started.set()
            try:
                await asyncio.wait_for(both_started.wait(), 15)
                overlapped.append(True)
            except TimeoutError:
                overlapped.append(False)
        await asyncio.sleep(0.01)
        order[session].append(index)

    await send_sessions(client, entity, ["a", "b"], 6)
    running = Running(client, entity, handler, FAST)
    try:
        await eventually(lambda: _true(running.stats.completed == 12))
    finally:
        await running.shutdown()
    assert overlapped == [True, True]
    assert order == {"a": list(range(6)), "b": list(range(6))}
    assert running.stats.dead_lettered == {}


async def test_session_lock_renewal_keeps_a_long_handlers_session(
    client: ServiceBusClient,
) -> None:
    calls: list[tuple[str, int]] = []

    async def slow(envelope: EventEnvelope) -> None:
        calls.append(action(envelope))
        await asyncio.sleep(5)  # 2.5 times the session's 2 s LockDuration

    await send_sessions(client, ORDERS, ["slow"], 2)
    running = Running(client, ORDERS, slow, FAST)
    try:
        await eventually(lambda: _true(running.stats.completed == 2), within=40)
    finally:
        await running.shutdown()
    assert calls == [("slow", 0), ("slow", 1)]  # each once: the session was never lost
    assert running.stats.lock_renewals >= 4
    assert running.stats.locks_lost == 0
    assert running.stats.settlement_failures == 0


async def test_a_retry_holds_its_session_so_later_messages_wait(
    client: ServiceBusClient,
) -> None:
    seen: list[tuple[int, str]] = []

    async def flaky(envelope: EventEnvelope) -> None:
        _, index = action(envelope)
        if index == 1 and not any(i == 1 for i, _ in seen):
            seen.append((index, "failed"))
            raise TransientError("not yet")
        seen.append((index, "done"))

    policy = RetryPolicy(
        immediate_attempts=0, delayed_attempts=2, delayed_initial_delay=0.3, delayed_jitter=0
    )
    await send_sessions(client, ORDERS, ["s"], 3)
    running = Running(client, ORDERS, flaky, policy)
    try:
        await eventually(lambda: _true(running.stats.completed == 3))
    finally:
        await running.shutdown()
    assert seen == [(0, "done"), (1, "failed"), (1, "done"), (2, "done")]
    assert running.stats.abandoned == 1
    assert running.stats.retries_scheduled == 0


async def test_start_up_check_says_when_the_sessions_setting_disagrees(
    client: ServiceBusClient,
) -> None:
    await check_queues(
        client, [QueueEntity(ORDERS, sessions=True), QueueEntity(ORDERED, sessions=True)]
    )
    with pytest.raises(SessionsMismatchError) as raised:
        await check_queues(
            client,
            [
                QueueEntity(ORDERS, "CONSUMER_AUDIT_QUEUE", False, "CONSUMER_AUDIT_SESSIONS"),
                QueueEntity(
                    PLAIN, "CONSUMER_NOTIFICATIONS_QUEUE", True, "CONSUMER_NOTIFICATIONS_SESSIONS"
                ),
            ],
        )
    off, on = raised.value.problems
    assert "'orders' requires sessions" in off
    assert "CONSUMER_AUDIT_SESSIONS=true" in off
    assert "'plain' does not require sessions" in on
    assert "CONSUMER_NOTIFICATIONS_SESSIONS=false" in on


async def _true(value: bool) -> bool:
    return value


async def test_shutdown_abandons_a_held_retry_without_waiting_for_the_deadline(
    client: ServiceBusClient, caplog: pytest.LogCaptureFixture
) -> None:
    failed = asyncio.Event()

    async def broken(envelope: EventEnvelope) -> None:
        failed.set()
        raise TransientError("down")

    policy = RetryPolicy(
        immediate_attempts=0, delayed_attempts=3, delayed_initial_delay=60, delayed_jitter=0
    )
    await send_sessions(client, ORDERS, ["held"], 1)
    running = Running(client, ORDERS, broken, policy)
    await asyncio.wait_for(failed.wait(), 30)
    await eventually(lambda: _true(running.stats.in_flight == 1))  # held, not settled
    await running.shutdown()
    assert running.stats.abandoned == 1
    assert "shutdown deadline near" not in caplog.text  # released at the stop, not cancelled
