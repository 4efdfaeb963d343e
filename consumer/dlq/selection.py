"""Reading a DLQ without changing it: peeks, the snapshot, and what a selection picks."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.servicebus import ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient, ServiceBusReceiver

from consumer.dlq.errors import guard
from consumer.dlq.model import DeadLetteredMessage, DlqError, describe_message
from consumer.runtime.entities import EntityPath

_PEEK_PAGE = 250
"""Messages per peek call when reading the whole DLQ."""


@dataclass(frozen=True)
class Selection:
    """Which dead letters an operation applies to; criteria combine with AND.

    Attributes:
        sequence_numbers: Only these DLQ sequence numbers.
        reason: Only this dead-letter reason.
        older_than: Only messages enqueued longer ago than this.
        everything: Select all (required when no other criterion is given).

    Raises:
        DlqError: no criterion and not ``everything``.
    """

    sequence_numbers: frozenset[int] | None = None
    reason: str | None = None
    older_than: timedelta | None = None
    everything: bool = False

    def __post_init__(self) -> None:
        if not self.everything and not self.is_filtered:
            raise DlqError("select messages: sequence numbers, a reason, an age, or all")

    @property
    def is_filtered(self) -> bool:
        return bool(self.sequence_numbers) or self.reason is not None or self.older_than is not None

    def matches(self, item: DeadLetteredMessage, now: datetime) -> bool:
        if self.sequence_numbers and item.sequence_number not in self.sequence_numbers:
            return False
        if self.reason is not None and item.reason != self.reason:
            return False
        return self.older_than is None or (
            item.enqueued_time is not None and item.enqueued_time <= now - self.older_than
        )


async def list_dead_letters(
    client: ServiceBusClient, queue: str, *, limit: int | None = None
) -> list[DeadLetteredMessage]:
    """Peek dead letters of ``queue`` in sequence order (at most ``limit``).

    Raises:
        DlqError: the queue does not exist or cannot be read.
    """
    async with guard(queue):
        found = await peek_all(client, queue, limit)
    return found


async def show(client: ServiceBusClient, queue: str, sequence_number: int) -> DeadLetteredMessage:
    """Peek one dead letter by sequence number.

    Raises:
        DlqError: no such message, or the queue cannot be read.
    """
    async with guard(queue), dlq_receiver(client, queue) as dlq:
        batch = await dlq.peek_messages(max_message_count=1, sequence_number=sequence_number)
    if not batch or batch[0].sequence_number != sequence_number:
        raise DlqError(f"no dead letter with sequence number {sequence_number} on {queue}")
    return describe_message(batch[0])


async def select(
    client: ServiceBusClient, queue: str, selection: Selection
) -> list[DeadLetteredMessage]:
    """Peek the whole DLQ once and return what ``selection`` matches, in sequence order.

    Changes nothing. Age criteria are measured from the time of the call (UTC).

    Raises:
        DlqError: the queue does not exist or cannot be read.
    """
    now = datetime.now(UTC)
    return [item for item in await list_dead_letters(client, queue) if selection.matches(item, now)]


async def peek_all(
    client: ServiceBusClient, queue: str, limit: int | None
) -> list[DeadLetteredMessage]:
    """Every dead letter of ``queue`` (at most ``limit``), peeked in sequence order."""
    found: list[DeadLetteredMessage] = []
    async with dlq_receiver(client, queue) as dlq:
        next_sequence = 0
        while limit is None or len(found) < limit:
            want = _PEEK_PAGE if limit is None else min(_PEEK_PAGE, limit - len(found))
            batch = await dlq.peek_messages(max_message_count=want, sequence_number=next_sequence)
            if not batch:
                break
            found.extend(describe_message(message) for message in batch)
            next_sequence = int(batch[-1].sequence_number or 0) + 1
    return found


def dlq_receiver(
    client: ServiceBusClient,
    queue: str,
    mode: ServiceBusReceiveMode = ServiceBusReceiveMode.PEEK_LOCK,
    *,
    renewer: AutoLockRenewer | None = None,
) -> ServiceBusReceiver:
    """A receiver on ``<queue>/$DeadLetterQueue`` without prefetch (nothing locked unasked).

    ``queue`` is an entity path: a queue, or ``<topic>/Subscriptions/<name>``.
    """
    receiver: ServiceBusReceiver = EntityPath.parse(queue).receiver(
        client,
        sub_queue=ServiceBusSubQueue.DEAD_LETTER,
        receive_mode=mode,
        prefetch_count=0,
        auto_lock_renewer=renewer,
    )
    return receiver
