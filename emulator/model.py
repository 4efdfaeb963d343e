"""Stored messages and how they look on the wire when delivered or peeked.

Times are seconds since the epoch (UTC, ``float``) unless a name ends in ``_ms``.
System properties follow
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messages-payloads#message-routing-and-correlation
and the annotation names the SDKs read (``x-opt-sequence-number`` ...).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from proton import int32, timestamp

from emulator import codec
from emulator.codec import MessageContent

__all__ = ["MessageState", "SessionInfo", "StoredMessage", "render_message"]

#: ``DateTime.MaxValue`` in ms, what Azure reports as the expiry of a never-expiring message.
MAX_ABSOLUTE_EXPIRY_TIME_MS = 253402243199000


class MessageState(enum.IntEnum):
    """``x-opt-message-state`` values (the SDK's ``ServiceBusMessageState``)."""

    ACTIVE = 0
    DEFERRED = 1
    SCHEDULED = 2


@dataclass(slots=True, eq=False)
class SessionInfo:
    """One message session of a session-enabled queue.

    See https://learn.microsoft.com/azure/service-bus-messaging/message-sessions.

    Attributes:
        session_id: The SessionId (``properties.group-id`` of its messages).
        state: Session state set with ``set-session-state`` (opaque bytes), or ``None``.
        updated_at: When the state was last set (for ``get-message-sessions``).
        owner: Opaque handle of the receiver holding the session lock (the AMQP link).
        owner_scope: Opaque handle of that receiver's connection; management requests on the
            same connection may act on the session.
        locked_until: When the session lock expires.
        lock_generation: Incremented on every lock and release, so stale timers are ignored.
        available: Heap of sequence numbers available in this session.
    """

    session_id: str
    state: bytes | None = None
    updated_at: float = 0.0
    owner: object | None = None
    owner_scope: object | None = None
    locked_until: float | None = None
    lock_generation: int = 0
    available: list[int] | None = None

    @property
    def is_locked(self) -> bool:
        """Whether a receiver holds the session lock (it may already be past its time)."""
        return self.owner is not None


@dataclass(slots=True, eq=False)
class StoredMessage:
    """One message held by an entity.

    Attributes:
        sequence_number: Assigned by the queue when the message is accepted (or scheduled);
            kept when the message moves to the dead-letter queue.
        content: The client's message (with a broker-assigned ``message-id`` if it had none).
        enqueued_at: When it was accepted, or for a scheduled message when it became active.
        ttl: Effective time to live in seconds (min of the message's and the queue default),
            ``None`` for never.
        state: Active, deferred or scheduled.
        delivery_count: Failed delivery attempts so far (AMQP ``header.delivery-count``).
        scheduled_at: When a scheduled message becomes active.
        lock_token: The current peek-lock, if locked.
        locked_until: When the current lock expires (for session messages: the session's).
        in_available: Whether the sequence number is in an available heap.
        session_id: SessionId (``group-id``), ``None`` without.
        session: The session whose lock covers the current message lock, if any.
    """

    sequence_number: int
    content: MessageContent
    enqueued_at: float
    ttl: float | None = None
    state: MessageState = MessageState.ACTIVE
    delivery_count: int = 0
    scheduled_at: float | None = None
    lock_token: uuid.UUID | None = None
    locked_until: float | None = None
    in_available: bool = False
    session_id: str | None = None
    session: SessionInfo | None = None

    @property
    def expires_at(self) -> float | None:
        """``enqueued_at + ttl``, or ``None`` if the message never expires."""
        return None if self.ttl is None else self.enqueued_at + self.ttl

    def is_expired(self, now: float) -> bool:
        """Whether the time to live has passed at ``now``."""
        expires_at = self.expires_at
        return expires_at is not None and expires_at <= now

    @property
    def is_locked(self) -> bool:
        """Whether a peek-lock is currently held (it may already be past ``locked_until``)."""
        return self.lock_token is not None


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def render_message(message: StoredMessage) -> bytes:
    """Encode ``message`` the way Service Bus delivers it (and returns it from peek).

    Adds ``x-opt-sequence-number``, ``x-opt-enqueue-sequence-number``,
    ``x-opt-enqueued-time``, ``x-opt-message-state``, ``x-opt-locked-until`` (when locked)
    and keeps the client's ``x-opt-scheduled-enqueue-time`` / ``x-opt-partition-key``;
    writes ``header.delivery-count`` explicitly and sets ``properties.absolute-expiry-time``
    from the effective time to live.

    ``x-opt-deadletter-source`` is set only on messages auto-forwarded out of a dead-letter
    queue (``ForwardDeadLetteredMessagesTo``), as Azure sets ``DeadLetterSource``
    (https://learn.microsoft.com/dotnet/api/azure.messaging.servicebus.servicebusreceivedmessage);
    it travels in the message's own annotations. A dead-lettered message keeps its sequence number
    (the dead-letter queue is a sub-queue of the same entity, and
    https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing assigns numbers
    when a message is accepted, which dead-lettering is not), so
    ``x-opt-enqueue-sequence-number`` always equals ``x-opt-sequence-number`` here.
    """
    annotations: dict[object, object] = {
        codec.X_OPT_SEQUENCE_NUMBER: message.sequence_number,
        codec.X_OPT_ENQUEUE_SEQUENCE_NUMBER: message.sequence_number,
        codec.X_OPT_ENQUEUED_TIME: timestamp(_ms(message.enqueued_at)),
        codec.X_OPT_MESSAGE_STATE: int32(int(message.state)),
    }
    if message.locked_until is not None:
        annotations[codec.X_OPT_LOCKED_UNTIL] = timestamp(_ms(message.locked_until))
    content = message.content
    sent_expiry = content.properties[8] if content.properties else None
    if message.ttl is None:
        ttl_ms = None
        expiry_ms = MAX_ABSOLUTE_EXPIRY_TIME_MS if content.properties else None
    else:
        ttl_ms = _ms(message.ttl)
        expiry_ms = min(_ms(message.enqueued_at) + ttl_ms, MAX_ABSOLUTE_EXPIRY_TIME_MS)
    if sent_expiry is not None and content.header.ttl_ms == ttl_ms:
        # The sender's own absolute-expiry-time (creation-time + TTL) is kept when the TTL
        # was not shortened by the queue: @azure/service-bus derives the TTL from the two.
        expiry_ms = None
    return codec.encode_message(
        message.content,
        delivery_count=message.delivery_count,
        annotations=annotations,
        ttl_ms=ttl_ms,
        absolute_expiry_time_ms=expiry_ms,
    )
