"""Auto-forwarding between entities: the destination interface and Azure's limits.

From https://learn.microsoft.com/azure/service-bus-messaging/service-bus-auto-forwarding
and the reasons table of
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues:
a queue or subscription with ``ForwardTo`` moves every message that arrives in it to a queue
or topic; with ``ForwardDeadLetteredMessagesTo`` every message it dead-letters. A message
may make at most four such hops; the entity that would make a fifth dead-letters it with
``MaxTransferHopCountExceeded``. A destination that requires sessions refuses a message
without a SessionId; it is dead-lettered with ``Session ID is null``.
"""

from __future__ import annotations

from typing import Protocol

from emulator.codec import MessageContent

__all__ = [
    "MAX_FORWARDING_HOPS",
    "MAX_HOPS_EXCEEDED",
    "MAX_HOPS_EXCEEDED_DESCRIPTION",
    "SESSION_ID_IS_NULL",
    "SESSION_ID_IS_NULL_DESCRIPTION",
    "Destination",
]

#: Most auto-forwarding hops a message may make.
MAX_FORWARDING_HOPS = 4
#: ``DeadLetterReason`` past :data:`MAX_FORWARDING_HOPS`.
MAX_HOPS_EXCEEDED = "MaxTransferHopCountExceeded"
MAX_HOPS_EXCEEDED_DESCRIPTION = (
    "The maximum number of allowed hops when forwarding between queues has been exceeded. "
    "This value is set to 4."
)
#: ``DeadLetterReason`` for a message without SessionId meant for a session-enabled entity.
SESSION_ID_IS_NULL = "Session ID is null"
SESSION_ID_IS_NULL_DESCRIPTION = (
    "Session enabled entity doesn't allow a message whose session identifier is null."
)


class Destination(Protocol):
    """Where forwarded messages (and a topic's copies) go: a queue, a subscription, a topic."""

    @property
    def name(self) -> str:
        """Entity path as configured (``"orders"``, ``"events/Subscriptions/audit"``)."""

    def accept_forwarded(self, content: MessageContent, now: float, hops: int) -> None:
        """Take ``content``, which has made ``hops`` forwarding hops to get here.

        Never raises for the message itself: what cannot be stored is dead-lettered.
        """
