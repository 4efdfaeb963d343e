"""The message state machine of one queue or dead-letter sub-queue: :class:`Entity`.

Behaviour mirrors Azure Service Bus:

* peek-lock, complete / abandon / dead-letter / defer, lock expiry and renewal:
  https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement
* dead-lettering, ``MaxDeliveryCountExceeded``, ``TTLExpiredException``:
  https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues
* scheduled messages, sequence numbers:
  https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing
* deferral: https://learn.microsoft.com/azure/service-bus-messaging/message-deferral
* expiry: https://learn.microsoft.com/azure/service-bus-messaging/message-expiration
* sessions: https://learn.microsoft.com/azure/service-bus-messaging/message-sessions
* duplicate detection: https://learn.microsoft.com/azure/service-bus-messaging/duplicate-detection

Expiry: Azure purges expired messages when a receiver pulls from the queue and at receive
time ("Expired messages are only purged and moved to the DLQ when there's at least one
active receiver pulling from the main queue", message-expiration above). The emulator does
that too (an expired message is never handed out) and additionally expires available
messages on a timer, so an expired message reaches the dead-letter queue without a
receiver on the queue. Locked messages do not expire until given back; deferred ones only
when someone tries to receive them, as in Azure.

Everything here is single-threaded and knows nothing about AMQP links: the protocol layer
calls in, and is told through ``on_available`` when messages may be handed out and through
``on_session_lost`` when a session lock expired. Times are seconds since the epoch (UTC).
Per-message work is O(log n) (heaps with lazy deletion); only ``peek`` and
``list_sessions`` scan.

Every durable change is reported to an optional :class:`Journal` (the SQLite store of
``--data-dir``); locks are reported too, so that a message locked when the process died
comes back with its delivery count raised, as after any lost lock.

The state machine is built in layers, one module each: :mod:`~emulator.entity.message_store`
(state and primitives), :mod:`~emulator.entity.session_locks`,
:mod:`~emulator.entity.settlement`, and here sending, scheduling, restoring, peeking and the
timers (:mod:`~emulator.entity.deadlines`).
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Hashable, Iterable

from emulator.codec import MessageContent
from emulator.entity.deadlines import LockExpired, ScheduledDue, SessionLockExpired
from emulator.entity.forwarding import (
    MAX_FORWARDING_HOPS,
    MAX_HOPS_EXCEEDED,
    MAX_HOPS_EXCEEDED_DESCRIPTION,
    SESSION_ID_IS_NULL,
    SESSION_ID_IS_NULL_DESCRIPTION,
)
from emulator.entity.settings import MAX_DELIVERY_COUNT_EXCEEDED
from emulator.entity.settlement import Settlement
from emulator.errors import InvalidOperationError, MessageNotFoundError
from emulator.model import MessageState, SessionInfo, StoredMessage

__all__ = ["Entity"]

_NO_SESSION_ID = (
    "The SessionId was not set on a message, and it cannot be sent to the entity. Entities "
    "that have session support enabled can only receive messages that have the SessionId "
    "set to a valid value."
)


class Entity(Settlement):
    """A queue, a topic subscription, or their ``$DeadLetterQueue``.

    Args:
        name: Entity path, e.g. ``"audit"`` or ``"audit/$DeadLetterQueue"``.
        settings: Behaviour.
        dead_letter_queue: Where dead-lettered messages go (``None``: dead-lettering is
            refused).
        is_dead_letter_queue: Whether this is a ``$DeadLetterQueue`` (sending is refused,
            time to live is not observed).
    """

    # --- accepting messages ---------------------------------------------------------------

    def check_sendable(self, content: MessageContent) -> None:
        """Raise if ``content`` may not be sent here (DLQ, missing SessionId).

        Raises:
            InvalidOperationError: sending to a dead-letter queue, or a message without
                SessionId to a session-enabled queue (``amqp:not-allowed``, which the .NET
                SDK raises as ``InvalidOperationException``).
        """
        if self.is_dead_letter_queue:
            raise InvalidOperationError("cannot send to a dead-letter queue")
        if self.requires_session and not content.session_id:
            raise InvalidOperationError(_NO_SESSION_ID)

    def enqueue(self, content: MessageContent, now: float) -> StoredMessage | None:
        """Accept a message sent to the queue.

        A message carrying ``x-opt-scheduled-enqueue-time`` in the future is scheduled.

        Returns:
            The stored message, or ``None`` if duplicate detection dropped it or it went
            elsewhere (auto-forwarded, or fanned out by a topic).

        Raises:
            InvalidOperationError: see :meth:`check_sendable`.
        """
        self.check_sendable(content)
        if self._is_duplicate(content, now):
            return None
        scheduled_ms = content.scheduled_enqueue_time_ms
        return self._store(content, now, None if scheduled_ms is None else scheduled_ms / 1000.0)

    def enqueue_all(self, contents: list[MessageContent], now: float) -> None:
        """Accept a batch atomically: every message is checked before any is stored.

        Raises:
            InvalidOperationError: see :meth:`check_sendable`; nothing is stored.
        """
        for content in contents:
            self.check_sendable(content)
        for content in contents:
            self.enqueue(content, now)

    def schedule(self, content: MessageContent, at: float, now: float) -> int:
        """Schedule ``content`` to become active at ``at`` (management ``schedule-message``).

        Returns:
            The sequence number, usable with :meth:`cancel_scheduled`. For a duplicate that
            duplicate detection drops, Azure still answers with a number; so do we (it is
            never used).

        Raises:
            InvalidOperationError: see :meth:`check_sendable`.
        """
        self.check_sendable(content)
        if self._is_duplicate(content, now):
            return self._take_sequence()
        message = self._store(content, now, at)
        # A time already past on a forwarding entity or a topic: routed at once.
        return message.sequence_number if message is not None else self._take_sequence()

    def cancel_scheduled(self, sequence_numbers: Iterable[int]) -> None:
        """Remove scheduled messages before they become active.

        Raises:
            MessageNotFoundError: if any number is not a scheduled message; nothing is removed.
        """
        numbers = list(sequence_numbers)
        for number in numbers:
            message = self._messages.get(number)
            if message is None or message.state is not MessageState.SCHEDULED:
                raise MessageNotFoundError(f"no scheduled message with sequence number {number}")
        for number in numbers:
            self._remove(number)

    def _effective_ttl(self, content: MessageContent) -> float | None:
        own = content.header.ttl_ms / 1000.0 if content.header.ttl_ms else None
        default = self.settings.default_ttl
        if own is None:
            return default
        return own if default is None else min(own, default)

    def accept_forwarded(self, content: MessageContent, now: float, hops: int) -> None:
        """Take a message auto-forwarded here after ``hops`` hops, or a topic's copy for
        this subscription (``hops`` as the topic received it).

        Unlike :meth:`enqueue` it never refuses: a message without SessionId for a
        session-enabled entity is dead-lettered here (``Session ID is null``). Duplicate
        detection applies.
        """
        if self.requires_session and not content.session_id:
            self.dead_letter_arrived(
                content, now, SESSION_ID_IS_NULL, SESSION_ID_IS_NULL_DESCRIPTION, hops
            )
            return
        if self._is_duplicate(content, now):
            return
        scheduled_ms = content.scheduled_enqueue_time_ms
        self._store(content, now, None if scheduled_ms is None else scheduled_ms / 1000.0, hops)

    def _route(self, content: MessageContent, now: float, hops: int) -> bool:
        """Send an arriving active message elsewhere instead of storing it here; ``True`` if
        it was. Queues and subscriptions auto-forward (``ForwardTo``); topics fan out."""
        target = self.forward_to
        if target is None:
            return False
        if hops >= MAX_FORWARDING_HOPS:
            # Over the limit: dead-lettered here, and not forwarded on from the DLQ either.
            self.dead_letter_arrived(
                content, now, MAX_HOPS_EXCEEDED, MAX_HOPS_EXCEEDED_DESCRIPTION, MAX_FORWARDING_HOPS
            )
        else:
            target.accept_forwarded(content, now, hops + 1)
        return True

    def dead_letter_arrived(
        self, content: MessageContent, now: float, reason: str, description: str, hops: int
    ) -> None:
        """Dead-letter a message that arrived after ``hops`` hops and was never stored here."""
        if self.dead_letter_queue is None:
            return
        self._move_to_dead_letter(self._new_message(content, now), reason, description, hops=hops)

    def _new_message(self, content: MessageContent, now: float) -> StoredMessage:
        if content.message_id is None:
            # Azure always delivers a MessageId; clients such as @azure/service-bus rely on it.
            content = content.with_message_id(uuid.uuid4().hex)
        return StoredMessage(
            sequence_number=self._take_sequence(),
            content=content,
            enqueued_at=now,
            ttl=self._effective_ttl(content),
            session_id=content.session_id,
        )

    def _store(
        self, content: MessageContent, now: float, at: float | None, hops: int = 0
    ) -> StoredMessage | None:
        """Store an accepted message (scheduled if ``at`` is later than ``now``); ``None`` if
        it went elsewhere (see :meth:`_route`)."""
        if (at is None or at <= now) and self._route(content, now, hops):
            return None
        message = self._new_message(content, now)
        self._messages[message.sequence_number] = message
        if at is not None and at > now:
            message.state = MessageState.SCHEDULED
            message.scheduled_at = at
            # Azure reports the scheduled time as the enqueued time once it is active.
            message.enqueued_at = at
            self._deadlines.add_scheduled(message.sequence_number, at)
            self._stored(message)
        else:
            self._stored(message)
            self._make_available(message)
            self._notify()
        return message

    def _activate(self, message: StoredMessage, at: float, now: float) -> None:
        """A scheduled message's time came: make it available, or route it on."""
        if self._route(message.content, now, 0):
            self._remove(message.sequence_number)
            return
        message.state = MessageState.ACTIVE
        message.scheduled_at = None
        message.enqueued_at = at
        self._updated(message)
        self._make_available(message)

    # --- restoring from a store -----------------------------------------------------------

    def restore(
        self,
        messages: Iterable[StoredMessage],
        next_sequence: int,
        sessions: Iterable[SessionInfo],
        duplicates: Iterable[tuple[Hashable, float]],
        now: float,
    ) -> list[StoredMessage]:
        """Load state kept by a store (at start-up, before any client connects).

        Messages must come without locks; ``StoredMessage.lock_token`` set means "was locked
        when the process stopped": that counts as a lost lock (delivery count +1, possibly
        dead-lettered). Returns the messages that reached ``MaxDeliveryCount`` that way; the
        caller moves them with :meth:`dead_letter_restored` once every entity is loaded.
        """
        self._next_sequence = max(self._next_sequence, next_sequence)
        for session in sessions:
            self._sessions[session.session_id] = session
        if self._dedup is not None:
            for key, at in sorted(duplicates, key=lambda item: item[1]):
                self._dedup.record(key, at)
        over_limit = []
        for message in sorted(messages, key=lambda m: m.sequence_number):
            was_locked = message.lock_token is not None
            message.lock_token = None
            message.locked_until = None
            message.session = None
            message.in_available = False
            self._messages[message.sequence_number] = message
            if was_locked:
                message.delivery_count += 1
                self._updated(message)
            limit = self.settings.max_delivery_count
            if was_locked and limit is not None and message.delivery_count >= limit:
                over_limit.append(message)
            elif message.state is MessageState.SCHEDULED and message.scheduled_at is not None:
                self._deadlines.add_scheduled(message.sequence_number, message.scheduled_at)
            elif message.state is MessageState.ACTIVE:
                self._make_available(message)
        return over_limit

    def dead_letter_restored(self, messages: Iterable[StoredMessage]) -> None:
        """Dead-letter messages :meth:`restore` found over ``MaxDeliveryCount``."""
        for message in messages:
            if self.dead_letter_queue is None:
                if message.state is MessageState.ACTIVE:
                    self._make_available(message)
                continue
            self._move_to_dead_letter(message, MAX_DELIVERY_COUNT_EXCEEDED, self._mdc_text())

    # --- peek -----------------------------------------------------------------------------

    def peek(
        self, from_sequence_number: int, count: int, session_id: str | None = None
    ) -> list[StoredMessage]:
        """Up to ``count`` messages in any state with sequence number >= ``from_sequence_number``
        (of ``session_id`` only, if given), in sequence order, without locking them.

        O(n log count) in the number held.
        """
        numbers = heapq.nsmallest(
            max(count, 0),
            (
                n
                for n, m in self._messages.items()
                if n >= from_sequence_number and (session_id is None or m.session_id == session_id)
            ),
        )
        return [self._messages[n] for n in numbers]

    # --- timers ---------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`process_due` has work, or ``None``."""
        return self._deadlines.next()

    def process_due(self, now: float) -> None:
        """Expire locks and session locks, activate scheduled messages and expire messages
        whose time to live passed, for everything due at ``now``."""
        changed = False
        while (due := self._deadlines.pop_due(now)) is not None:
            changed = True
            if isinstance(due, LockExpired):
                self._expire_lock(self._locks[due.lock_token])
            elif isinstance(due, SessionLockExpired):
                self._expire_session_lock(self._sessions[due.session_id], now)
            elif isinstance(due, ScheduledDue):
                self._activate(self._messages[due.sequence_number], due.at, now)
            else:
                message = self._messages[due.sequence_number]
                message.in_available = False
                self._expire_message(message)
        if changed:
            self._notify()
