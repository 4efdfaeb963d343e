"""Dead-letter queue operations: list, select, replay, purge (the CLI's ``consumer dlq``).

Dead-lettered messages live in the sub-queue ``<queue>/$DeadLetterQueue`` with
application properties ``DeadLetterReason`` and ``DeadLetterErrorDescription``
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues).

* Listing, showing and selecting *peek* (no lock, nothing changes).
* Replay and purge work on a **snapshot**: the DLQ is peeked once, before anything is sent
  or settled, and the selection is applied to that snapshot. Only those sequence numbers
  are replayed or deleted, each at most once per call; dead letters that arrive later
  (a replayed message dead-lettered again by a running consumer, say) are left for the
  next call.
* What unselected dead letters see: a DLQ is read in sequence order and a lock can only be
  taken by receiving (receive-by-sequence-number only returns *deferred* messages,
  https://learn.microsoft.com/azure/service-bus-messaging/message-deferral). So the
  unselected dead letters *ahead of* the last selected one are received in peek-lock,
  held (locks renewed) until the selected ones are settled, then given back with the AMQP
  ``released`` outcome, which returns a message without counting a delivery (AMQP 1.0
  section 3.4.4; ``abandon`` would count one,
  https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement).
  Their delivery count, properties and position are unchanged; while held, another DLQ
  receiver cannot take them. Dead letters after the last selected one are not received
  (a non-partitioned queue delivers in sequence order).
  The SDK has no public call for ``released`` (it sends one itself for messages that
  arrive outside a receive call); :func:`_release` uses that same path and falls back to
  ``abandon`` if a future SDK removes it.
* A replayed copy goes to the main queue with message id
  ``<original message id>:replay:<DLQ sequence number>``, where the original id is taken
  from the ``replayedOriginalMessageId`` property when the dead letter was itself a
  replay, so ids never grow. A re-send of the same dead letter (after a crash between send
  and complete) has the same id and queue duplicate detection drops it. Ids longer than
  128 characters (the Service Bus limit) keep the whole suffix and a shortened original.
  The copy drops retry and dead-letter properties and carries provenance:
  ``replayedOriginalMessageId``, ``replayedFromSequenceNumber``,
  ``replayedDeadLetterReason``, ``replayedDeadLetterDescription``, ``replayedAt``
  (ISO-8601 UTC) and ``replayCount``. The dead letter is completed once the copy is sent.

All functions take the process's ``ServiceBusClient``. A user-facing problem raises
:class:`DlqError` with a one-line message; when it stops a replay or purge midway, the
error carries the :class:`Outcome` of what was done before it.
"""

import json
import logging
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
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient, ServiceBusReceiver
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
    ServiceBusError,
)

from consumer.messages import DEAD_LETTER_PROPERTIES, copy_for_resend, text_properties
from consumer.retry import RETRY_PROPERTIES

REPLAYED_ORIGINAL_ID = "replayedOriginalMessageId"
REPLAYED_FROM = "replayedFromSequenceNumber"
REPLAYED_REASON = "replayedDeadLetterReason"
REPLAYED_DESCRIPTION = "replayedDeadLetterDescription"
REPLAYED_AT = "replayedAt"
REPLAY_COUNT = "replayCount"
MAX_MESSAGE_ID_LENGTH = 128
"""Service Bus limit on ``message_id`` (characters)."""
_REPLAY_MARK = ":replay:"
_DROPPED = {*RETRY_PROPERTIES, *DEAD_LETTER_PROPERTIES}
_BATCH = 100
_LOCK_RENEWAL_LIMIT = 3600.0
"""Seconds a held lock is renewed at most (a replay or purge pass longer than this lets
the locks of held, unselected dead letters expire, which counts a delivery)."""

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]
"""Called with the number of selected messages just handled (for progress bars)."""
Selected = Callable[[int], None]
"""Called once with the number of selected messages, before any is handled."""


class DlqError(Exception):
    """A problem to report to the user in one line (unknown queue, no access, ...).

    Attributes:
        outcome: What a replay or purge did before the problem stopped it (``None`` when
            the problem came before it started).
    """

    def __init__(self, message: str, *, outcome: "Outcome | None" = None) -> None:
        super().__init__(message)
        self.outcome = outcome


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
    """What a replay or purge did (or, dry run, would do).

    Attributes:
        matched: The selected dead letters, from the snapshot, in sequence order.
        replayed: DLQ sequence number -> message id of the copy sent to the main queue.
        purged: Dead letters deleted.
        failed: DLQ sequence number -> why it was not replayed or purged (or, replay, why
            it is still in the DLQ although its copy was sent).
        missing: Selected sequence numbers no longer in the DLQ when received (settled
            meanwhile by someone else, or locked by another receiver).
    """

    matched: list[DeadLetter] = field(default_factory=list)
    replayed: dict[int, str] = field(default_factory=dict)
    purged: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)


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
    async with _guard(queue):
        found = await _peek_all(client, queue, limit)
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


async def select(client: ServiceBusClient, queue: str, selection: Selection) -> list[DeadLetter]:
    """Peek the whole DLQ once and return what ``selection`` matches, in sequence order.

    Changes nothing. Age criteria are measured from the time of the call (UTC).

    Raises:
        DlqError: the queue does not exist or cannot be read.
    """
    now = datetime.now(UTC)
    return [item for item in await list_dead_letters(client, queue) if selection.matches(item, now)]


async def replay(
    client: ServiceBusClient,
    queue: str,
    selection: Selection,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    on_selected: Selected | None = None,
    max_wait_time: float = 5.0,
) -> Outcome:
    """Send the selected dead letters back to ``queue`` and remove them from its DLQ.

    Works on a snapshot taken before anything is sent; each selected dead letter is
    replayed at most once per call (see the module docstring for ids, provenance and what
    unselected dead letters see). A dead letter whose copy cannot be sent (too large for
    the queue, say) stays in the DLQ unchanged and is reported in ``failed``.

    Args:
        client: The client.
        queue: Main queue name.
        selection: What to replay.
        dry_run: Only report what would be replayed (peeks; changes nothing).
        progress: Called after each selected dead letter is handled.
        on_selected: Called once with the number selected, before any is handled.
        max_wait_time: Seconds to wait for a selected dead letter to be delivered before
            reporting the rest as ``missing``.

    Returns:
        What was done; ``replayed`` and ``failed`` together cover ``matched`` less
        ``missing``.

    Raises:
        DlqError: the queue does not exist or cannot be used; its ``outcome`` says what
            was replayed before that.
    """
    if dry_run:
        return Outcome(matched=await select(client, queue, selection))
    now = datetime.now(UTC)
    outcome = Outcome()
    async with _guard(queue, outcome), client.get_queue_sender(queue) as sender:

        async def send_copy(message: ServiceBusReceivedMessage, item: DeadLetter) -> None:
            copy = replay_copy(message, item, now)
            await sender.send_messages(copy)
            outcome.replayed[item.sequence_number] = str(copy.message_id)

        await _each_selected(
            client, queue, selection, send_copy, None, outcome, progress, on_selected, max_wait_time
        )
    return outcome


async def purge(
    client: ServiceBusClient,
    queue: str,
    selection: Selection,
    *,
    progress: Progress | None = None,
    on_selected: Selected | None = None,
    max_wait_time: float = 5.0,
) -> Outcome:
    """Delete the selected dead letters of ``queue``.

    Works on a snapshot taken before anything is deleted, like :func:`replay`: dead letters
    that arrive during the call are kept, even with ``Selection(everything=True)``.

    Args:
        client: The client.
        queue: Main queue name.
        selection: What to delete.
        progress: Called after each selected dead letter is handled.
        on_selected: Called once with the number selected, before any is deleted.
        max_wait_time: Seconds to wait for a selected dead letter to be delivered before
            reporting the rest as ``missing``.

    Raises:
        DlqError: the queue does not exist or cannot be used; its ``outcome`` says how many
            were deleted before that.
    """
    outcome = Outcome()

    def deleted(_item: DeadLetter) -> None:
        outcome.purged += 1

    async with _guard(queue, outcome):
        await _each_selected(
            client, queue, selection, None, deleted, outcome, progress, on_selected, max_wait_time
        )
    return outcome


def replay_copy(
    message: ServiceBusReceivedMessage, item: DeadLetter, now: datetime
) -> ServiceBusMessage:
    """The message sent back to the main queue for a dead letter (see module docstring)."""
    previous = item.properties.get(REPLAY_COUNT, 0)
    original = original_message_id(item)
    return copy_for_resend(
        message,
        message_id=replay_message_id(original, item.sequence_number),
        body=item.body,
        drop=_DROPPED,
        add={
            REPLAYED_ORIGINAL_ID: original,
            REPLAYED_FROM: item.sequence_number,
            REPLAYED_REASON: item.reason or "",
            REPLAYED_DESCRIPTION: (item.description or "")[:1024],
            REPLAYED_AT: now.isoformat(),
            REPLAY_COUNT: (previous if isinstance(previous, int) else 0) + 1,
        },
    )


def original_message_id(item: DeadLetter) -> str:
    """The message id before any replay: ``replayedOriginalMessageId`` when the dead
    letter is itself a replay, else its own id (with the ``:replay:<n>`` suffixes of
    earlier versions of this tool removed)."""
    recorded = item.properties.get(REPLAYED_ORIGINAL_ID)
    if isinstance(recorded, str) and recorded:
        return recorded
    own = item.message_id or ""
    if REPLAYED_FROM in item.properties and _REPLAY_MARK in own:
        return own.split(_REPLAY_MARK, 1)[0]
    return own


def replay_message_id(original: str, sequence_number: int) -> str:
    """``<original>:replay:<sequence number>``, at most 128 characters (the original is
    shortened: the sequence number alone keeps ids of one DLQ distinct)."""
    suffix = f"{_REPLAY_MARK}{sequence_number}"
    return original[: MAX_MESSAGE_ID_LENGTH - len(suffix)] + suffix


async def _each_selected(
    client: ServiceBusClient,
    queue: str,
    selection: Selection,
    act: Callable[[ServiceBusReceivedMessage, DeadLetter], Awaitable[None]] | None,
    removed: Callable[[DeadLetter], None] | None,
    outcome: Outcome,
    progress: Progress | None,
    on_selected: Selected | None,
    max_wait_time: float,
) -> None:
    """Snapshot, then receive up to the last selected dead letter: ``act`` on and complete
    each selected one, hold the others and release them at the end (module docstring)."""
    now = datetime.now(UTC)
    snapshot = await _peek_all(client, queue, None)
    outcome.matched = [item for item in snapshot if selection.matches(item, now)]
    if on_selected is not None:
        on_selected(len(outcome.matched))
    pending = {item.sequence_number for item in outcome.matched}
    if not pending:
        return
    order = [item.sequence_number for item in snapshot]
    received: set[int] = set()
    held: list[ServiceBusReceivedMessage] = []
    renewer = AutoLockRenewer(max_lock_renewal_duration=_LOCK_RENEWAL_LIMIT)
    async with _dlq_receiver(client, queue, renewer=renewer) as dlq:
        try:
            while pending:
                last_wanted = max(pending)
                # Ask for no more than the snapshot holds up to the last selected one, so
                # nothing after it (e.g. a replay dead-lettered again) is ever received.
                ahead = sum(
                    1 for number in order if number <= last_wanted and number not in received
                )
                batch = await dlq.receive_messages(
                    max_message_count=max(1, min(ahead, _BATCH)), max_wait_time=max_wait_time
                )
                if not batch:
                    break
                for message in batch:
                    number = int(message.sequence_number or 0)
                    received.add(number)
                    if number not in pending:
                        held.append(message)
                        continue
                    pending.discard(number)
                    if not await _settle_selected(dlq, queue, message, act, removed, outcome):
                        held.append(message)
                    if progress is not None:
                        progress(1)
                if any(int(m.sequence_number or 0) > last_wanted for m in batch):
                    break  # delivered in sequence order: what is still pending is not there
        finally:
            await renewer.close()
            for message in held:
                await _release(dlq, message)
    outcome.missing = sorted(pending)


async def _settle_selected(
    dlq: ServiceBusReceiver,
    queue: str,
    message: ServiceBusReceivedMessage,
    act: Callable[[ServiceBusReceivedMessage, DeadLetter], Awaitable[None]] | None,
    removed: Callable[[DeadLetter], None] | None,
    outcome: Outcome,
) -> bool:
    """``act`` then complete; ``False`` when the message must be released (left as it was)."""
    item = describe_message(message)
    if act is not None:
        try:
            await act(message, item)
        except MessageSizeExceededError as exc:
            outcome.failed[item.sequence_number] = f"too large for {queue}: {_first_line(exc)}"
            return False
        except (ValueError, TypeError) as exc:  # the SDK refused to build or send the copy
            logger.debug("dead letter %s not replayed", item.sequence_number, exc_info=True)
            outcome.failed[item.sequence_number] = f"{type(exc).__name__}: {_first_line(exc)}"
            return False
    try:
        await dlq.complete_message(message)
    except (MessageLockLostError, MessageAlreadySettled) as exc:
        sent = "copy sent, but " if item.sequence_number in outcome.replayed else ""
        outcome.failed[item.sequence_number] = (
            f"{sent}still in the DLQ: its lock was lost ({_first_line(exc)})"
        )
        return True
    if removed is not None:
        removed(item)
    return True


async def _release(receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage) -> None:
    """Give a held message back without counting a delivery (AMQP ``released``).

    Hand-written on the SDK's internals because its public API has no ``released``: this is
    the call the SDK itself makes for messages that arrive outside a receive call.
    Best effort: if it fails, the lock expires after the queue's LockDuration.
    """
    handler = getattr(receiver, "_handler", None)
    settle = getattr(handler, "settle_messages_async", None)
    delivery_id = getattr(message, "_delivery_id", None)
    delivery_tag = getattr(message, "_delivery_tag", None)
    try:
        if settle is None or delivery_id is None or delivery_tag is None:
            logger.warning("this SDK cannot release messages; abandoning (delivery count +1)")
            await receiver.abandon_message(message)
        else:
            await settle(delivery_id, delivery_tag, "released")
    except Exception:  # best effort, see above
        logger.debug("could not release dead letter %s", message.sequence_number, exc_info=True)


async def _peek_all(client: ServiceBusClient, queue: str, limit: int | None) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    async with _dlq_receiver(client, queue) as dlq:
        next_sequence = 0
        while limit is None or len(found) < limit:
            want = 250 if limit is None else min(250, limit - len(found))
            batch = await dlq.peek_messages(max_message_count=want, sequence_number=next_sequence)
            if not batch:
                break
            found.extend(describe_message(message) for message in batch)
            next_sequence = int(batch[-1].sequence_number or 0) + 1
    return found


def _dlq_receiver(
    client: ServiceBusClient,
    queue: str,
    mode: ServiceBusReceiveMode = ServiceBusReceiveMode.PEEK_LOCK,
    *,
    renewer: AutoLockRenewer | None = None,
) -> ServiceBusReceiver:
    return client.get_queue_receiver(
        queue,
        sub_queue=ServiceBusSubQueue.DEAD_LETTER,
        receive_mode=mode,
        prefetch_count=0,
        auto_lock_renewer=renewer,
    )


class _guard:
    """Turns errors into a one-line :class:`DlqError` carrying ``outcome`` (work done)."""

    def __init__(self, queue: str, outcome: Outcome | None = None) -> None:
        self._queue = queue
        self._outcome = outcome

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: object
    ) -> bool:
        if error is None or not isinstance(error, Exception):
            return False
        if isinstance(error, DlqError):
            if error.outcome is None:
                error.outcome = self._outcome
            return False
        raise DlqError(self._describe(error), outcome=self._outcome) from error

    def _describe(self, error: Exception) -> str:
        queue = self._queue
        if isinstance(error, MessagingEntityNotFoundError):
            return f"queue {queue!r} does not exist"
        if isinstance(error, ServiceBusAuthorizationError | ServiceBusAuthenticationError):
            return f"not allowed to use queue {queue!r}: {_first_line(error)}"
        if isinstance(error, ServiceBusConnectionError):
            return f"cannot reach Service Bus: {_first_line(error)}"
        if isinstance(error, ServiceBusError):
            return f"queue {queue!r}: {_first_line(error)}"
        return f"queue {queue!r}: {type(error).__name__}: {_first_line(error)}"


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
