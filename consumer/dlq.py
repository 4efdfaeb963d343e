"""Dead-letter queue operations: list, show, replay, purge (the CLI's ``consumer dlq``).

Dead-lettered messages live in the sub-queue ``<queue>/$DeadLetterQueue`` with
application properties ``DeadLetterReason`` and ``DeadLetterErrorDescription``
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues).

* Listing and showing *peek* (no lock, nothing changes).
* Replay receives the selected messages in peek-lock mode, sends a copy of each to the
  main queue and then completes it in the DLQ. The copy has a new message id,
  ``<original message id>:replay:<DLQ sequence number>`` (so queue duplicate detection
  does not drop it, yet drops a second send of the same replay after a crash), no retry
  or dead-letter properties, and provenance properties ``replayedFromSequenceNumber``,
  ``replayedDeadLetterReason``, ``replayedDeadLetterDescription``, ``replayedAt``
  (ISO-8601 UTC) and ``replayCount``. Messages not selected are abandoned at the end
  (their DLQ delivery count increases).
* Purge deletes the selected messages (receive-and-delete when all are selected).

All functions take the process's ``ServiceBusClient`` and raise :class:`DlqError` with a
one-line message on a user-facing problem (unknown queue, no access).
"""

import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
    ServiceBusError,
)

from consumer.messages import DEAD_LETTER_PROPERTIES, copy_for_resend, text_properties
from consumer.retry import RETRY_PROPERTIES

REPLAYED_FROM = "replayedFromSequenceNumber"
REPLAYED_REASON = "replayedDeadLetterReason"
REPLAYED_DESCRIPTION = "replayedDeadLetterDescription"
REPLAYED_AT = "replayedAt"
REPLAY_COUNT = "replayCount"
_DROPPED = {*RETRY_PROPERTIES, *DEAD_LETTER_PROPERTIES}

Progress = Callable[[int], None]
"""Called with the number of messages just handled (for progress bars)."""


class DlqError(Exception):
    """A problem to report to the user in one line (unknown queue, no access, ...)."""


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message.

    Attributes:
        sequence_number: Its sequence number in the DLQ.
        message_id: The message id.
        reason: ``DeadLetterReason``.
        description: ``DeadLetterErrorDescription``.
        delivery_count: Deliveries before (and in) the DLQ.
        enqueued_time: When it was enqueued (aware UTC).
        event_type: ``eventType`` property or subject, if any.
        body: The body bytes.
        content_type: The content type.
        properties: Application properties (``str`` keys).
    """

    sequence_number: int
    message_id: str | None
    reason: str | None
    description: str | None
    delivery_count: int | None
    enqueued_time: datetime | None
    event_type: str | None
    body: bytes = field(repr=False)
    content_type: str | None = None
    properties: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self, *, with_body: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "sequence_number": self.sequence_number,
            "message_id": self.message_id,
            "reason": self.reason,
            "description": self.description,
            "delivery_count": self.delivery_count,
            "enqueued_time": self.enqueued_time.isoformat() if self.enqueued_time else None,
            "event_type": self.event_type,
        }
        if with_body:
            data["content_type"] = self.content_type
            data["properties"] = {k: _jsonable(v) for k, v in self.properties.items()}
            data["body"] = self.body.decode("utf-8", "replace")
        return data


@dataclass(frozen=True)
class Selection:
    """Which dead letters an operation applies to; criteria combine with AND.

    Attributes:
        sequence_numbers: Only these DLQ sequence numbers.
        reason: Only this dead-letter reason.
        older_than: Only messages enqueued longer ago than this.
        everything: Select all (required when no other criterion is given).
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

    def matches(self, item: DeadLetter, now: datetime) -> bool:
        if self.sequence_numbers and item.sequence_number not in self.sequence_numbers:
            return False
        if self.reason is not None and item.reason != self.reason:
            return False
        return self.older_than is None or (
            item.enqueued_time is not None and item.enqueued_time <= now - self.older_than
        )


@dataclass
class Outcome:
    """What an operation did (or, dry run, would do)."""

    matched: list[DeadLetter] = field(default_factory=list)
    replayed: dict[int, str] = field(default_factory=dict)
    """DLQ sequence number -> message id of the copy sent to the main queue."""
    purged: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    """DLQ sequence number -> error."""


def describe_message(message: ServiceBusReceivedMessage) -> DeadLetter:
    """A :class:`DeadLetter` view of a received or peeked DLQ message."""
    properties = text_properties(message)
    event_type = properties.get("eventType") or message.subject
    enqueued = message.enqueued_time_utc
    return DeadLetter(
        sequence_number=int(message.sequence_number or 0),
        message_id=str(message.message_id) if message.message_id is not None else None,
        reason=message.dead_letter_reason,
        description=message.dead_letter_error_description,
        delivery_count=message.delivery_count,
        enqueued_time=enqueued.astimezone(UTC) if enqueued else None,
        event_type=str(event_type) if event_type else None,
        body=_body(message),
        content_type=message.content_type,
        properties=properties,
    )


async def list_dead_letters(
    client: ServiceBusClient, queue: str, *, limit: int | None = None
) -> list[DeadLetter]:
    """Peek dead letters of ``queue`` in sequence order (at most ``limit``).

    Raises:
        DlqError: the queue does not exist or cannot be read.
    """
    found: list[DeadLetter] = []
    async with _guard(queue), _dlq_receiver(client, queue) as dlq:
        next_sequence = 0
        while limit is None or len(found) < limit:
            want = 250 if limit is None else min(250, limit - len(found))
            batch = await dlq.peek_messages(max_message_count=want, sequence_number=next_sequence)
            if not batch:
                break
            found.extend(describe_message(message) for message in batch)
            next_sequence = int(batch[-1].sequence_number or 0) + 1
    return found


async def show(client: ServiceBusClient, queue: str, sequence_number: int) -> DeadLetter:
    """Peek one dead letter by sequence number.

    Raises:
        DlqError: no such message, or the queue cannot be read.
    """
    async with _guard(queue), _dlq_receiver(client, queue) as dlq:
        batch = await dlq.peek_messages(max_message_count=1, sequence_number=sequence_number)
    if not batch or batch[0].sequence_number != sequence_number:
        raise DlqError(f"no dead letter with sequence number {sequence_number} on {queue}")
    return describe_message(batch[0])


async def replay(
    client: ServiceBusClient,
    queue: str,
    selection: Selection,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    max_wait_time: float = 5.0,
) -> Outcome:
    """Send the selected dead letters back to ``queue`` and remove them from its DLQ.

    Args:
        client: The client.
        queue: Main queue name.
        selection: What to replay.
        dry_run: Only report what would be replayed (peeks; changes nothing).
        progress: Progress callback.
        max_wait_time: Seconds to wait for more dead letters before finishing.

    Raises:
        DlqError: the queue does not exist or cannot be used.
    """
    if dry_run:
        return await _dry_run(client, queue, selection)
    now = datetime.now(UTC)
    outcome = Outcome()
    async with _guard(queue), client.get_queue_sender(queue) as sender:

        async def act(message: ServiceBusReceivedMessage, item: DeadLetter) -> None:
            copy = replay_copy(message, item, now)
            await sender.send_messages(copy)
            outcome.replayed[item.sequence_number] = str(copy.message_id)

        await _each_selected(client, queue, selection, act, outcome, progress, max_wait_time)
    return outcome


async def purge(
    client: ServiceBusClient,
    queue: str,
    selection: Selection,
    *,
    progress: Progress | None = None,
    max_wait_time: float = 5.0,
) -> Outcome:
    """Delete the selected dead letters of ``queue``.

    Raises:
        DlqError: the queue does not exist or cannot be used.
    """
    outcome = Outcome()
    async with _guard(queue):
        if selection.everything and not selection.is_filtered:
            async with _dlq_receiver(
                client, queue, ServiceBusReceiveMode.RECEIVE_AND_DELETE
            ) as dlq:
                while batch := await dlq.receive_messages(
                    max_message_count=250, max_wait_time=max_wait_time
                ):
                    outcome.purged += len(batch)
                    if progress:
                        progress(len(batch))
            return outcome

        async def act(_message: ServiceBusReceivedMessage, _item: DeadLetter) -> None:
            outcome.purged += 1

        await _each_selected(client, queue, selection, act, outcome, progress, max_wait_time)
    return outcome


def replay_copy(
    message: ServiceBusReceivedMessage, item: DeadLetter, now: datetime
) -> ServiceBusMessage:
    """The message sent back to the main queue for a dead letter (see module docstring)."""
    previous = item.properties.get(REPLAY_COUNT, 0)
    return copy_for_resend(
        message,
        message_id=f"{item.message_id}:replay:{item.sequence_number}",
        body=item.body,
        drop=_DROPPED,
        add={
            REPLAYED_FROM: item.sequence_number,
            REPLAYED_REASON: item.reason or "",
            REPLAYED_DESCRIPTION: (item.description or "")[:1024],
            REPLAYED_AT: now.isoformat(),
            REPLAY_COUNT: (previous if isinstance(previous, int) else 0) + 1,
        },
    )


async def _dry_run(client: ServiceBusClient, queue: str, selection: Selection) -> Outcome:
    now = datetime.now(UTC)
    everything = await list_dead_letters(client, queue)
    return Outcome(matched=[item for item in everything if selection.matches(item, now)])


async def _each_selected(
    client: ServiceBusClient,
    queue: str,
    selection: Selection,
    act: Callable[[ServiceBusReceivedMessage, DeadLetter], Awaitable[None]],
    outcome: Outcome,
    progress: Progress | None,
    max_wait_time: float,
) -> None:
    """Receive the DLQ once through; ``act`` then complete each selected message."""
    now = datetime.now(UTC)
    held: list[ServiceBusReceivedMessage] = []
    seen: set[int] = set()
    wanted = set(selection.sequence_numbers or ())
    async with _dlq_receiver(client, queue) as dlq:
        try:
            while True:
                batch = await dlq.receive_messages(
                    max_message_count=100, max_wait_time=max_wait_time
                )
                fresh = [m for m in batch if int(m.sequence_number or 0) not in seen]
                if not fresh:
                    break
                for message in fresh:
                    item = describe_message(message)
                    seen.add(item.sequence_number)
                    if not selection.matches(item, now):
                        held.append(message)
                        continue
                    outcome.matched.append(item)
                    try:
                        await act(message, item)
                        await dlq.complete_message(message)
                    except (MessageLockLostError, MessageAlreadySettled) as exc:
                        outcome.failed[item.sequence_number] = repr(exc)
                    if progress:
                        progress(1)
                if wanted and wanted <= seen:
                    break
        finally:
            for message in held:
                with contextlib.suppress(ServiceBusError):  # else its lock expires
                    await dlq.abandon_message(message)


def _dlq_receiver(
    client: ServiceBusClient,
    queue: str,
    mode: ServiceBusReceiveMode = ServiceBusReceiveMode.PEEK_LOCK,
) -> ServiceBusReceiver:
    return client.get_queue_receiver(
        queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, receive_mode=mode, prefetch_count=0
    )


class _guard:
    """Turns SDK errors into one-line :class:`DlqError`."""

    def __init__(self, queue: str) -> None:
        self._queue = queue

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: object
    ) -> bool:
        if error is None or isinstance(error, DlqError) or not isinstance(error, Exception):
            return False
        queue = self._queue
        if isinstance(error, MessagingEntityNotFoundError):
            raise DlqError(f"queue {queue!r} does not exist") from error
        if isinstance(error, ServiceBusAuthorizationError | ServiceBusAuthenticationError):
            raise DlqError(f"not allowed to use queue {queue!r}: {_first_line(error)}") from error
        if isinstance(error, ServiceBusConnectionError):
            raise DlqError(f"cannot reach Service Bus: {_first_line(error)}") from error
        if isinstance(error, ServiceBusError):
            raise DlqError(f"queue {queue!r}: {_first_line(error)}") from error
        return False


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _body(message: ServiceBusReceivedMessage) -> bytes:
    if message.body_type == AmqpMessageBodyType.DATA:
        return b"".join(message.body)
    body = message.body
    if isinstance(body, bytes):
        return body
    return json.dumps(body, default=str).encode() if not isinstance(body, str) else body.encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
