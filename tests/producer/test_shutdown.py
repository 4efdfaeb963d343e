"""The producer's shutdown runs against one deadline (``producer.shutdown``).

Real senders on the emulator, with their ``close`` wrapped in-process: slow closes must
run at once, closes that never end must be given up at the deadline, and nothing accepted
may be lost on the way.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender

from contracts import AuditEvent, NotificationEvent
from producer import ProducerSettings, open_event_publisher
from producer.shutdown import MIN_CLOSE_TIME, ShutdownDeadline
from producer.transport import ServiceBusTransport
from tests.conftest import AUDIT_QUEUE, NOTIFICATIONS_QUEUE
from tests.producer.conftest import AUDIT, NOTIFICATION, all_published, receive

SenderClose = Callable[[ServiceBusSender], Awaitable[None]]


class CloseProbe:
    """Wraps ``ServiceBusSender.close``: counts closes running at once, and how they end."""

    def __init__(self, original: SenderClose, *, hang: bool) -> None:
        self._original = original
        self._hang = hang
        self.running = 0
        self.most_at_once = 0
        self.started: set[int] = set()
        self.finished: set[int] = set()
        self.cancelled: set[int] = set()
        self.left_at_cancel: list[float] = []
        self.deadline: ShutdownDeadline | None = None

    async def close(self, sender: ServiceBusSender) -> None:
        self.started.add(id(sender))
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            if self._hang:  # a Service Bus that never answers the detach
                await asyncio.Event().wait()
            # Yield, as a close on the wire does, so that closes started together overlap.
            await asyncio.sleep(0.05)
            await self._original(sender)
            self.finished.add(id(sender))
        except asyncio.CancelledError:
            self.cancelled.add(id(sender))
            if self.deadline is not None:
                self.left_at_cancel.append(self.deadline.left())
            raise
        finally:
            self.running -= 1


@pytest.fixture
def wrap_close(monkeypatch: pytest.MonkeyPatch) -> Callable[..., CloseProbe]:
    """Install a :class:`CloseProbe` on every async sender from now on."""

    def install(*, hang: bool = False) -> CloseProbe:
        probe = CloseProbe(ServiceBusSender.close, hang=hang)

        async def close(self: ServiceBusSender) -> None:
            await probe.close(self)

        monkeypatch.setattr(ServiceBusSender, "close", close)
        return probe

    return install


def _message(n: int) -> ServiceBusMessage:
    return ServiceBusMessage(f"m{n}", message_id=f"shutdown-{n}")


async def test_transport_closes_the_senders_of_every_queue_at_once(
    connection_string: str, wrap_close: Callable[..., CloseProbe]
) -> None:
    async with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        ServiceBusTransport(client, operation_timeout=10, senders_per_queue=2) as transport,
    ):
        # Concurrent sends to both queues open both lanes (senders) of each.
        await asyncio.gather(
            *(
                transport.send(queue, [_message(n)])
                for queue in (AUDIT_QUEUE, NOTIFICATIONS_QUEUE)
                for n in range(8)
            )
        )
        probe = wrap_close()

    assert len(probe.started) >= 2, "a sender per queue at least"
    assert probe.finished == probe.started
    # One after the other, only one close would ever run at a time.
    assert probe.most_at_once == len(probe.started)


@pytest.mark.timeout(60)  # without the deadline, a close that never ends hangs the exit
async def test_closes_that_never_end_are_given_up_at_the_deadline_and_nothing_is_lost(
    connection_string: str,
    make_settings: Callable[..., ProducerSettings],
    wrap_close: Callable[..., CloseProbe],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(connection_string, shutdown_grace=1, servicebus_operation_timeout=10)
    deadline = ShutdownDeadline(settings.shutdown_grace.total_seconds())
    caplog.set_level(logging.INFO, logger="producer")
    probe: CloseProbe | None = None
    async with open_event_publisher(settings, shutdown=deadline) as publisher:
        accepted = [
            await publisher.publish(AuditEvent.model_validate(AUDIT)),
            await publisher.publish(NotificationEvent.model_validate(NOTIFICATION)),
        ]
        assert await all_published(publisher, [a.id for a in accepted])
        probe = wrap_close(hang=True)
        probe.deadline = deadline

    assert probe.started, "the senders were closed"
    assert probe.most_at_once == len(probe.started), "closed at once"
    assert probe.cancelled == probe.started
    assert not probe.finished
    # Given up at the deadline, not before it (and the exit returned: the test ends).
    assert probe.left_at_cancel
    assert all(left <= 0 for left in probe.left_at_cancel)
    messages = [m.message for m in caplog.records]
    assert any(m.startswith("shutdown deadline reached while") for m in messages), messages
    assert any(m.startswith("shutdown finished") for m in messages), messages
    # Both accepted events reached their queues.
    audit = await asyncio.to_thread(receive, connection_string, AUDIT_QUEUE, 1)
    notifications = await asyncio.to_thread(receive, connection_string, NOTIFICATIONS_QUEUE, 1)
    assert [str(m.message_id) for m in audit + notifications] == [a.id for a in accepted]


async def test_an_accepted_event_left_unpublished_at_the_deadline_is_sent_at_the_next_start(
    connection_string: str,
    make_settings: Callable[..., ProducerSettings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(connection_string, shutdown_grace=1, servicebus_operation_timeout=30)
    stuck = asyncio.Event()
    original_send = ServiceBusSender.send_messages

    async def never_acknowledged(self: ServiceBusSender, *args: Any, **kwargs: Any) -> None:
        stuck.set()
        await asyncio.Event().wait()  # Service Bus never settles the transfer

    monkeypatch.setattr(ServiceBusSender, "send_messages", never_acknowledged)
    async with open_event_publisher(settings) as publisher:
        accepted = await publisher.publish(AuditEvent.model_validate(AUDIT))
        await asyncio.wait_for(stuck.wait(), 20)
    monkeypatch.setattr(ServiceBusSender, "send_messages", original_send)

    async with open_event_publisher(settings) as publisher:
        assert await all_published(publisher, [accepted.id])
    audit = await asyncio.to_thread(receive, connection_string, AUDIT_QUEUE, 1)
    assert [str(m.message_id) for m in audit] == [accepted.id]


def test_one_deadline_from_the_first_signal_splits_the_grace_period() -> None:
    now = [100.0]
    deadline = ShutdownDeadline(10, clock=lambda: now[0])
    assert deadline.left() == 10, "nothing counts down before the signal"
    assert deadline.http_drain_seconds() == 8, "requests end by the reserve (2 s)"

    deadline.start()
    now[0] += 3
    deadline.start()  # a second signal does not move it
    assert deadline.left() == 7
    assert deadline.work_left() == 5
    now[0] += 9
    assert deadline.work_left() == 0
    assert deadline.close_left() == MIN_CLOSE_TIME, "closes still get their minimum"

    short = ShutdownDeadline(1)
    assert short.reserve == 0.5, "at most half of a short grace period is reserved"
    assert short.http_drain_seconds() == 0
