"""Replay: send selected dead letters back to their queue as new messages with provenance.

Ids, provenance properties and what unselected dead letters see: :mod:`consumer.dlq`.

A subscription's dead letters cannot go back to the subscription: Service Bus accepts
messages for topics and queues only, and Microsoft keeps it so by design
(https://github.com/Azure/azure-service-bus/issues/445, #706). So a subscription's
replay goes to its topic, with the application property ``replayTarget`` set to the
subscription's name (:data:`consumer.runtime.entities.REPLAY_TARGET`), and the topic
hands it to every subscription whose rules match, as it did the original. The target
subscription processes it; the other subscriptions this consumer reads complete it
unprocessed (they had the original); subscriptions read by others keep the copy out with
a rule such as ``replayTarget IS NULL OR replayTarget = '<their name>'`` (a SQL filter,
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-filter).
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient

from consumer.dlq.errors import guard
from consumer.dlq.model import DeadLetteredMessage, Outcome, Progress, Selected
from consumer.dlq.selection import Selection, select
from consumer.dlq.settlement import each_selected
from consumer.messages import DEAD_LETTER_PROPERTIES, copy_for_resend
from consumer.retry import RETRY_PROPERTIES
from consumer.runtime.entities import REPLAY_TARGET, EntityPath

REPLAYED_ORIGINAL_ID = "replayedOriginalMessageId"
REPLAYED_FROM = "replayedFromSequenceNumber"
REPLAYED_REASON = "replayedDeadLetterReason"
REPLAYED_DESCRIPTION = "replayedDeadLetterDescription"
REPLAYED_AT = "replayedAt"
REPLAY_COUNT = "replayCount"
MAX_MESSAGE_ID_LENGTH = 128
"""Service Bus limit on ``message_id`` (characters)."""
_REPLAY_MARK = ":replay:"
_DROPPED = {*RETRY_PROPERTIES, *DEAD_LETTER_PROPERTIES, REPLAY_TARGET}


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

    ``queue`` may be a subscription (``<topic>/Subscriptions/<name>``): its copies go to
    the topic, meant for that subscription (see the module docstring).

    Works on a snapshot taken before anything is sent; each selected dead letter is
    replayed at most once per call (see :mod:`consumer.dlq` for ids, provenance and what
    unselected dead letters see). A dead letter whose copy cannot be sent (too large for
    the queue, say) stays in the DLQ unchanged and is reported in ``failed``.

    Args:
        client: The client.
        queue: Main queue name, or subscription path.
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
    async with guard(queue, outcome):
        entity = EntityPath.parse(queue)
        target = {REPLAY_TARGET: entity.name} if entity.topic is not None else {}
        sender = (
            client.get_topic_sender(entity.topic)
            if entity.topic is not None
            else client.get_queue_sender(entity.name)
        )

        async def send_copy(message: ServiceBusReceivedMessage, item: DeadLetteredMessage) -> None:
            copy = replay_copy(message, item, now, target)
            await sender.send_messages(copy)
            outcome.replayed[item.sequence_number] = str(copy.message_id)

        async with sender:
            await each_selected(
                client,
                queue,
                selection,
                send_copy,
                None,
                outcome,
                progress,
                on_selected,
                max_wait_time,
            )
    return outcome


def replay_copy(
    message: ServiceBusReceivedMessage,
    item: DeadLetteredMessage,
    now: datetime,
    extra: Mapping[str, Any] | None = None,
) -> ServiceBusMessage:
    """The message sent back to the main queue for a dead letter (see :mod:`consumer.dlq`),
    with ``extra`` application properties (a subscription's ``replayTarget``)."""
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
            **(extra or {}),
        },
    )


def original_message_id(item: DeadLetteredMessage) -> str:
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
