"""Service Bus, read by peeking (no lock, nothing changes): counts per queue and where an
event's messages are.

Counts come from peeks rather than the management API's runtime properties
(``active_message_count`` and so on) because a peek needs only the *Listen* right (the
console's managed identity in Azure gets "Azure Service Bus Data Receiver") and works the
same on the emulator. A peek reads at most ``limit`` messages, so a count at the limit is
shown as "at least". Scheduled messages are peeked too, with state ``scheduled``
(https://learn.microsoft.com/azure/service-bus-messaging/message-browsing).
"""

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.servicebus import ServiceBusMessageState, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

from consumer import dlq as dlq_api

_PAGE = 250
"""Messages per peek call."""


@dataclass(frozen=True)
class QueueCounts:
    """Messages in one queue and its DLQ, as peeked.

    Attributes:
        active: Active (receivable) messages.
        scheduled: Scheduled messages (not yet active).
        deferred: Deferred messages.
        dead_lettered: Messages in ``<queue>/$DeadLetterQueue``.
        capped: A peek stopped at the limit: the counts are lower bounds.
    """

    active: int
    scheduled: int
    deferred: int
    dead_lettered: int
    capped: bool


@dataclass(frozen=True)
class QueuedMessage:
    """A message of an event still in its queue."""

    sequence_number: int
    message_id: str
    state: str
    delivery_count: int | None
    enqueued_time: datetime | None
    scheduled_enqueue_time: datetime | None


def belongs_to(message_id: str | None, event_id: str) -> bool:
    """Whether ``message_id`` carries ``event_id``: the event itself, a retry
    (``<id>:retry:<n>``) or a replay (``<id>:replay:<n>``)."""
    return message_id is not None and (
        message_id == event_id or message_id.startswith(f"{event_id}:")
    )


class BusReader:
    """Peeks over the process's one ``ServiceBusClient``.

    Args:
        client: The console's client.
        limit: Most messages read per queue or DLQ.
    """

    def __init__(self, client: ServiceBusClient, limit: int) -> None:
        self.client = client
        self.limit = limit

    async def counts(self, queue: str) -> QueueCounts:
        """Peek ``queue`` and its DLQ and count by state.

        Raises:
            azure.servicebus.exceptions.ServiceBusError: the queue cannot be read.
        """
        states: dict[ServiceBusMessageState, int] = {}
        seen = 0
        async with self._receiver(queue) as receiver:
            async for message in self._peek(receiver, lambda _m: True):
                state = message.state
                states[state] = states.get(state, 0) + 1
                seen += 1
        dead = await dlq_api.list_dead_letters(self.client, queue, limit=self.limit)
        return QueueCounts(
            active=states.get(ServiceBusMessageState.ACTIVE, 0),
            scheduled=states.get(ServiceBusMessageState.SCHEDULED, 0),
            deferred=states.get(ServiceBusMessageState.DEFERRED, 0),
            dead_lettered=len(dead),
            capped=seen >= self.limit or len(dead) >= self.limit,
        )

    async def on_queue(self, queue: str, event_id: str) -> list[QueuedMessage]:
        """The event's messages still in ``queue`` (active, scheduled or deferred)."""
        found: list[QueuedMessage] = []
        async with self._receiver(queue) as receiver:
            async for message in self._peek(
                receiver, lambda m: belongs_to(_message_id(m), event_id)
            ):
                scheduled = message.scheduled_enqueue_time_utc
                enqueued = message.enqueued_time_utc
                found.append(
                    QueuedMessage(
                        sequence_number=int(message.sequence_number or 0),
                        message_id=_message_id(message) or "",
                        state=message.state.name.lower(),
                        delivery_count=message.delivery_count,
                        enqueued_time=enqueued.astimezone(UTC) if enqueued else None,
                        scheduled_enqueue_time=scheduled.astimezone(UTC) if scheduled else None,
                    )
                )
        return found

    async def dead_letters(self, queue: str, event_id: str) -> list[dlq_api.DeadLetteredMessage]:
        """The event's dead letters in ``<queue>/$DeadLetterQueue`` (itself, its retries,
        its replays).

        Raises:
            consumer.dlq.DlqError: the DLQ cannot be read.
        """
        peeked = await dlq_api.list_dead_letters(self.client, queue, limit=self.limit)
        return [
            item
            for item in peeked
            if belongs_to(item.message_id, event_id)
            or item.properties.get(dlq_api.REPLAYED_ORIGINAL_ID) == event_id
        ]

    def _receiver(self, queue: str) -> ServiceBusReceiver:
        return self.client.get_queue_receiver(queue, prefetch_count=0)

    async def _peek(
        self,
        receiver: ServiceBusReceiver,
        keep: Callable[[ServiceBusReceivedMessage], bool],
    ) -> AsyncIterator[ServiceBusReceivedMessage]:
        next_sequence, read = 0, 0
        while read < self.limit:
            batch = await receiver.peek_messages(
                max_message_count=min(_PAGE, self.limit - read), sequence_number=next_sequence
            )
            if not batch:
                return
            read += len(batch)
            for message in batch:
                if keep(message):
                    yield message
            next_sequence = int(batch[-1].sequence_number or 0) + 1


def _message_id(message: ServiceBusReceivedMessage) -> str | None:
    return str(message.message_id) if message.message_id is not None else None
