"""Cancelling a notification before it is delivered.

Not yet sent: its outbox row becomes ``cancelled`` and the relay never sends it. Already
scheduled on Service Bus: its scheduled message is cancelled by sequence number first
(https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing#scheduled-messages).
"""

import asyncio
from datetime import datetime, timedelta

from azure.servicebus.exceptions import MessageNotFoundError, ServiceBusError

from contracts import NOTIFICATION_EVENT_TYPE
from contracts._types import utc_now
from producer.errors import (
    CancellationPendingError,
    EventNotFoundError,
    NotCancellableError,
    OutboxUnavailableError,
)
from producer.outbox.database import DATABASE_ERRORS
from producer.outbox.models import OutboxStatus
from producer.outbox.records import OutboxRecord
from producer.outbox.relay import PublishStats
from producer.outbox.repository import OutboxRepository
from producer.transport import ServiceBusTransport

CANCEL_WAIT = timedelta(seconds=5)
"""How long a cancellation waits for an in-flight publish of the same event to finish."""


async def get_record(repository: OutboxRepository, event_id: str) -> OutboxRecord:
    """The outbox row of ``event_id``.

    Raises:
        EventNotFoundError: unknown or pruned.
        OutboxUnavailableError: the database could not be read.
    """
    try:
        record = await repository.get(event_id)
    except DATABASE_ERRORS as exc:
        raise OutboxUnavailableError.from_database(exc) from exc
    if record is None:
        raise EventNotFoundError(f"no event with id {event_id!r}")
    return record


async def cancel_notification(
    repository: OutboxRepository,
    transport: ServiceBusTransport,
    stats: PublishStats,
    event_id: str,
    *,
    source: str | None = None,
) -> OutboxRecord:
    """Cancel a notification that has not been delivered yet.

    Not yet sent: it never will be. Scheduled for later: its scheduled message is
    cancelled (``cancel_scheduled_messages``,
    https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing#scheduled-messages).
    Cancelling a cancelled notification returns it unchanged.

    Args:
        event_id: The notification's id.
        source: When given, only the caller that created it may cancel it.

    Returns:
        The row, now ``cancelled``.

    Raises:
        EventNotFoundError: no such notification (or another caller's).
        NotCancellableError: already delivered (published, or its scheduled time has
            passed), or failed.
        CancellationPendingError: it is being published right now; retry.
        OutboxUnavailableError: the database or Service Bus could not be reached.
    """
    deadline = asyncio.get_running_loop().time() + CANCEL_WAIT.total_seconds()
    while True:
        record = await get_record(repository, event_id)
        if record.event_type != NOTIFICATION_EVENT_TYPE or (
            source is not None and record.source != source
        ):
            raise EventNotFoundError(f"no notification with id {event_id!r}")
        now = utc_now()
        if record.status is OutboxStatus.CANCELLED:
            return record
        if record.status is OutboxStatus.SCHEDULED:
            return await _cancel_scheduled(repository, transport, stats, record, now)
        if record.status is OutboxStatus.PUBLISHED:
            raise NotCancellableError(
                "the notification is already published (sent to its queue); it can be "
                "cancelled only before it is published",
                record.status.value,
            )
        if record.status is not OutboxStatus.ACCEPTED:
            raise NotCancellableError(
                f"the notification is {record.status.value} (it can never be sent); "
                "there is nothing to cancel",
                record.status.value,
            )
        try:
            cancelled = await repository.cancel_unsent(event_id, now=now)
        except DATABASE_ERRORS as exc:
            raise OutboxUnavailableError.from_database(exc) from exc
        if cancelled:
            stats.cancelled += 1
            return await get_record(repository, event_id)
        if asyncio.get_running_loop().time() > deadline:
            raise CancellationPendingError(
                "the notification is being published right now; retry in a few seconds"
            )
        await asyncio.sleep(0.1)


async def _cancel_scheduled(
    repository: OutboxRepository,
    transport: ServiceBusTransport,
    stats: PublishStats,
    record: OutboxRecord,
    now: datetime,
) -> OutboxRecord:
    if record.deliver_at is None or record.deliver_at <= now or record.sequence_number is None:
        raise NotCancellableError(
            "the notification's scheduled enqueue time has passed, so it is published "
            "(on its queue); it can be cancelled only before that time",
            "published",
        )
    try:
        await transport.cancel(record.queue, [record.sequence_number])
    except MessageNotFoundError:
        raise NotCancellableError(
            "the scheduled message is no longer pending: its scheduled enqueue time has "
            "passed, so it is published (on its queue)",
            "published",
        ) from None
    except (ServiceBusError, TimeoutError) as exc:
        raise OutboxUnavailableError(f"Service Bus is unavailable: {exc!r}") from exc
    try:
        await repository.mark_cancelled(record.id, now=utc_now())
    except DATABASE_ERRORS as exc:
        raise OutboxUnavailableError.from_database(exc) from exc
    stats.cancelled += 1
    return await get_record(repository, record.id)
