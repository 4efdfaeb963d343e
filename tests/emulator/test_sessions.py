"""Sessions on queues with ``RequiresSession``, through the Python SDK.

Mirrors https://learn.microsoft.com/azure/service-bus-messaging/message-sessions: a session
receiver locks one session (a named one, or the next available), gets its messages in
order, holds the session alone until it closes or the lock expires, and can keep state.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Iterator

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage, ServiceBusReceiveMode
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient
from azure.servicebus.exceptions import (
    OperationTimeoutError,
    ServiceBusError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)

from emulator.testing import EmulatorHandle, combine_configs, queue_config, run_emulator
from tests.emulator.conftest import eventually, receive_n, receive_none, seq

#: Session queue with long locks, one with 1 s locks (expiry tests), one with 3 s locks.
SESSIONS = "sessions"
SHORT = "short-sessions"
RENEWED = "renewed-sessions"


@pytest.fixture
def session_emulator() -> Iterator[EmulatorHandle]:
    config = combine_configs(
        queue_config(SESSIONS, RequiresSession=True),
        queue_config(SHORT, RequiresSession=True, LockDuration="PT1S", MaxDeliveryCount=5),
        queue_config(RENEWED, RequiresSession=True, LockDuration="PT3S"),
    )
    with run_emulator(config) as handle:
        yield handle


@pytest.fixture
async def sb(session_emulator: EmulatorHandle) -> AsyncIterator[ServiceBusClient]:
    # No retries: session errors would otherwise be retried with back-off.
    async with ServiceBusClient.from_connection_string(
        session_emulator.connection_string, retry_total=0
    ) as client:
        yield client


async def _send(client: ServiceBusClient, queue: str, *items: tuple[str, str]) -> None:
    async with client.get_queue_sender(queue) as sender:
        await sender.send_messages([ServiceBusMessage(body, session_id=sid) for sid, body in items])


async def test_session_receiver_gets_only_its_session_in_order(sb: ServiceBusClient) -> None:
    await _send(sb, SESSIONS, ("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2"), ("a", "a3"))
    async with sb.get_queue_receiver(SESSIONS, session_id="a") as receiver:
        assert receiver.session.session_id == "a"
        assert receiver.session.locked_until_utc is not None
        messages = await receive_n(receiver, 3)
        assert [(str(m), m.session_id) for m in messages] == [
            ("a1", "a"),
            ("a2", "a"),
            ("a3", "a"),
        ]
        await receiver.abandon_message(messages[0])  # back at the head of the session
        [again] = await receive_n(receiver, 1)
        assert (str(again), again.delivery_count) == ("a1", 1)
        for message in [again, *messages[1:]]:
            await receiver.complete_message(message)
        await receive_none(receiver, wait=0.3)
    async with sb.get_queue_receiver(SESSIONS, session_id="b") as receiver:
        assert [str(m) for m in await receive_n(receiver, 2)] == ["b1", "b2"]


async def test_next_available_session_picks_an_unlocked_session_with_messages(
    sb: ServiceBusClient,
) -> None:
    await _send(sb, SESSIONS, ("s1", "one"), ("s1", "two"), ("s2", "three"))
    async with (
        sb.get_queue_receiver(SESSIONS, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=5) as r1,
        sb.get_queue_receiver(SESSIONS, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=5) as r2,
    ):
        # The second receiver skips the session the first one holds.
        assert {r1.session.session_id, r2.session.session_id} == {"s1", "s2"}
        s1 = r1 if r1.session.session_id == "s1" else r2
        s2 = r2 if s1 is r1 else r1
        assert [str(m) for m in await receive_n(s1, 2)] == ["one", "two"]
        [three] = await receive_n(s2, 1)
        assert (str(three), three.session_id) == ("three", "s2")


async def test_next_available_session_waits_for_one_then_times_out(
    sb: ServiceBusClient,
) -> None:
    receiver = sb.get_queue_receiver(SESSIONS, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1)
    with pytest.raises(OperationTimeoutError):
        async with receiver:
            await receiver.receive_messages(max_wait_time=1)

    # A receiver already waiting gets the session as soon as a message arrives in it.
    waiting = sb.get_queue_receiver(SESSIONS, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=20)

    async def receive_first() -> list[str]:
        async with waiting:
            return [str(m) for m in await receive_n(waiting, 1)]

    task = asyncio.create_task(receive_first())
    await asyncio.sleep(0.5)
    assert not task.done()
    await _send(sb, SESSIONS, ("late", "arrived"))
    assert await asyncio.wait_for(task, 20) == ["arrived"]


async def test_a_locked_session_cannot_be_locked_again(sb: ServiceBusClient) -> None:
    await _send(sb, SESSIONS, ("busy", "1"))
    async with sb.get_queue_receiver(SESSIONS, session_id="busy") as first:
        with pytest.raises(SessionCannotBeLockedError):
            async with sb.get_queue_receiver(SESSIONS, session_id="busy") as second:
                await second.receive_messages(max_wait_time=1)
        [message] = await receive_n(first, 1)
        await first.complete_message(message)
    # Closing the first receiver released the session.
    async with sb.get_queue_receiver(SESSIONS, session_id="busy") as third:
        await receive_none(third, wait=0.3)


async def test_session_state_and_lock_renewal(sb: ServiceBusClient) -> None:
    async with sb.get_queue_receiver(SESSIONS, session_id="stateful") as receiver:
        assert await receiver.session.get_state() is None
        await receiver.session.set_state(b"step-2")
        assert await receiver.session.get_state() == b"step-2"
        first = receiver.session.locked_until_utc
        assert first is not None
        renewed = await receiver.session.renew_lock()  # renew-session-lock
        assert renewed > first
        assert receiver.session.locked_until_utc == renewed
    async with sb.get_queue_receiver(SESSIONS, session_id="stateful") as receiver:
        assert await receiver.session.get_state() == b"step-2"
        sessions = [s async for s in sb.list_queue_sessions(SESSIONS)]
        assert sessions == ["stateful"]
        await receiver.session.set_state(None)
        assert await receiver.session.get_state() is None


async def test_list_sessions_names_sessions_with_messages_or_recent_state(
    sb: ServiceBusClient,
) -> None:
    assert [s async for s in sb.list_queue_sessions(SESSIONS)] == []
    await _send(sb, SESSIONS, ("m1", "x"), ("m2", "y"))
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    async with sb.get_queue_receiver(SESSIONS, session_id="kept") as receiver:
        await receiver.session.set_state(b"s")
    assert sorted([s async for s in sb.list_queue_sessions(SESSIONS)]) == ["kept", "m1", "m2"]
    updated = [s async for s in sb.list_queue_sessions(SESSIONS, state_updated_after=before)]
    assert updated == ["kept"]


async def test_expired_session_lock_loses_the_session_and_redelivers(
    sb: ServiceBusClient,
) -> None:
    await _send(sb, SHORT, ("slow", "work"))
    async with sb.get_queue_receiver(SHORT, session_id="slow") as receiver:
        [message] = await receive_n(receiver, 1)
        assert message.delivery_count == 0
        await asyncio.sleep(1.5)  # longer than the 1 s session lock, never renewed
        with pytest.raises(SessionLockLostError):
            await receiver.complete_message(message)
    async with sb.get_queue_receiver(SHORT, session_id="slow") as receiver:
        [again] = await receive_n(receiver, 1)
        assert (str(again), again.delivery_count) == ("work", 1)
        await receiver.complete_message(again)


async def test_auto_lock_renewer_keeps_the_session(sb: ServiceBusClient) -> None:
    await _send(sb, RENEWED, ("held", "job"))
    renewer = AutoLockRenewer(max_lock_renewal_duration=30)
    try:
        async with sb.get_queue_receiver(
            RENEWED, session_id="held", auto_lock_renewer=renewer
        ) as receiver:
            [message] = await receive_n(receiver, 1)
            first = receiver.session.locked_until_utc
            await asyncio.sleep(4.5)  # longer than the 3 s lock
            with pytest.raises(SessionCannotBeLockedError):
                async with sb.get_queue_receiver(RENEWED, session_id="held") as other:
                    await other.receive_messages(max_wait_time=1)
            assert receiver.session.locked_until_utc is not None
            assert first is not None
            assert receiver.session.locked_until_utc > first
            await receiver.complete_message(message)
    finally:
        await renewer.close()


async def test_sending_without_session_id_is_refused(sb: ServiceBusClient) -> None:
    async with sb.get_queue_sender(SESSIONS) as sender:
        with pytest.raises(ServiceBusError, match="SessionId"):
            await sender.send_messages(ServiceBusMessage("no session"))
        with pytest.raises(ServiceBusError, match="SessionId"):
            await sender.send_messages(
                [ServiceBusMessage("ok", session_id="s"), ServiceBusMessage("not ok")]
            )
        with pytest.raises(ServiceBusError, match="SessionId"):
            await sender.schedule_messages(
                ServiceBusMessage("later"), datetime.datetime.now(datetime.UTC)
            )
    assert [s async for s in sb.list_queue_sessions(SESSIONS)] == []  # the batch was refused


async def test_session_peek_defer_and_receive_deferred(sb: ServiceBusClient) -> None:
    await _send(sb, SESSIONS, ("d", "first"), ("other", "not mine"), ("d", "second"))
    async with sb.get_queue_receiver(SESSIONS, session_id="d") as receiver:
        peeked = await receiver.peek_messages(max_message_count=10, sequence_number=1)
        assert [str(m) for m in peeked] == ["first", "second"]
        first, second = await receive_n(receiver, 2)
        await receiver.defer_message(first)
        await receiver.complete_message(second)
        [deferred] = await receiver.receive_deferred_messages([seq(first)])
        assert str(deferred) == "first"
        await receiver.complete_message(deferred)
        assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []


async def test_receive_and_delete_session_receiver(sb: ServiceBusClient) -> None:
    await _send(sb, SESSIONS, ("rad", "1"), ("rad", "2"))
    async with sb.get_queue_receiver(
        SESSIONS, session_id="rad", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as receiver:
        assert [str(m) for m in await receive_n(receiver, 2)] == ["1", "2"]

    async def empty() -> bool:
        return [s async for s in sb.list_queue_sessions(SESSIONS)] == []

    await eventually(empty)
