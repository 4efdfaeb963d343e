"""Dead-letter queue operations: list, select, replay, purge (the CLI's ``consumer dlq``).

Dead-lettered messages live in the sub-queue ``<queue>/$DeadLetterQueue`` with
application properties ``DeadLetterReason`` and ``DeadLetterErrorDescription``
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues).
Every operation takes an entity path: a queue name, or a subscription's
``<topic>/Subscriptions/<name>`` (its DLQ is ``<topic>/Subscriptions/<name>/$DeadLetterQueue``).
A subscription's replay goes through its topic, meant for that subscription by the
``replayTarget`` property: see :mod:`consumer.dlq.replay`.

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
  arrive outside a receive call); :mod:`consumer.dlq.release` uses that same path and
  falls back to ``abandon`` if a future SDK removes it.
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

Modules: :mod:`~consumer.dlq.model` (the values), :mod:`~consumer.dlq.selection` (peeks,
the snapshot and what it selects), :mod:`~consumer.dlq.settlement` (the receive-and-settle
pass over a snapshot), :mod:`~consumer.dlq.replay`, :mod:`~consumer.dlq.purge`,
:mod:`~consumer.dlq.release` (the SDK reach for ``released``), :mod:`~consumer.dlq.errors`.
"""

from consumer.dlq.model import (
    DeadLetteredMessage,
    DlqError,
    Outcome,
    Progress,
    Selected,
    describe_message,
)
from consumer.dlq.purge import purge
from consumer.dlq.replay import (
    MAX_MESSAGE_ID_LENGTH,
    REPLAY_COUNT,
    REPLAYED_AT,
    REPLAYED_DESCRIPTION,
    REPLAYED_FROM,
    REPLAYED_ORIGINAL_ID,
    REPLAYED_REASON,
    original_message_id,
    replay,
    replay_copy,
    replay_message_id,
)
from consumer.dlq.selection import Selection, list_dead_letters, select, show

__all__ = [
    "MAX_MESSAGE_ID_LENGTH",
    "REPLAYED_AT",
    "REPLAYED_DESCRIPTION",
    "REPLAYED_FROM",
    "REPLAYED_ORIGINAL_ID",
    "REPLAYED_REASON",
    "REPLAY_COUNT",
    "DeadLetteredMessage",
    "DlqError",
    "Outcome",
    "Progress",
    "Selected",
    "Selection",
    "describe_message",
    "list_dead_letters",
    "original_message_id",
    "purge",
    "replay",
    "replay_copy",
    "replay_message_id",
    "select",
    "show",
]
