"""The message state machine of one queue or dead-letter sub-queue.

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
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from emulator.codec import MessageContent
from emulator.dedup import DuplicateDetector
from emulator.errors import (
    ArgumentError,
    InvalidOperationError,
    MessageLockLostError,
    MessageNotFoundError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from emulator.model import MessageState, SessionInfo, StoredMessage

__all__ = [
    "MAX_DELIVERY_COUNT_EXCEEDED",
    "TTL_EXPIRED",
    "Entity",
    "EntitySettings",
    "Journal",
]

#: ``DeadLetterReason`` for messages that reached ``MaxDeliveryCount``.
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
#: ``DeadLetterReason`` for messages whose time to live passed (with
#: ``DeadLetteringOnMessageExpiration``).
TTL_EXPIRED = "TTLExpiredException"

_NO_SESSION_ID = (
    "The SessionId was not set on a message, and it cannot be sent to the entity. Entities "
    "that have session support enabled can only receive messages that have the SessionId "
    "set to a valid value."
)


class Journal(Protocol):
    """Receives every durable change of an entity (implemented by the SQLite store).

    ``entity`` is the lower-cased entity path (``"orders"``, ``"orders/$deadletterqueue"``).
    The objects passed are live: a journal reads them when it writes.
    """

    def message_stored(self, entity: str, message: StoredMessage) -> None:
        """A message was added, or its content changed."""

    def message_updated(self, entity: str, message: StoredMessage) -> None:
        """A message's state, delivery count, times or lock changed (not its content)."""

    def message_removed(self, entity: str, sequence_number: int) -> None:
        """A message left the entity (completed, moved, expired, cancelled)."""

    def sequence_advanced(self, entity: str, next_sequence: int) -> None:
        """The next sequence number to assign changed."""

    def session_changed(self, entity: str, session: SessionInfo) -> None:
        """A session's state changed."""

    def duplicate_recorded(self, entity: str, message_id: Hashable, at: float) -> None:
        """Duplicate detection remembered ``message_id`` at ``at``."""


@dataclass(frozen=True, slots=True)
class EntitySettings:
    """Per-entity behaviour. Durations are seconds.

    Attributes:
        lock_duration: How long a peek-lock (or session lock) lasts (``LockDuration``).
        max_delivery_count: Failed deliveries before dead-lettering; ``None`` for never
            (dead-letter queues).
        default_ttl: ``DefaultMessageTimeToLive``; ``None`` for never.
        duplicate_detection_window: Seconds of message-id history, or ``None`` when
            ``RequiresDuplicateDetection`` is off.
        requires_session: ``RequiresSession``.
        dead_lettering_on_expiration: ``DeadLetteringOnMessageExpiration``.
        max_message_size: Largest accepted encoded message, bytes
            (``MaxMessageSizeInKilobytes``; 256 KiB as on the Standard tier).
    """

    lock_duration: float = 60.0
    max_delivery_count: int | None = 10
    default_ttl: float | None = None
    duplicate_detection_window: float | None = None
    requires_session: bool = False
    dead_lettering_on_expiration: bool = False
    max_message_size: int = 256 * 1024


class Entity:
    """A queue, or a queue's ``$DeadLetterQueue``.

    Args:
        name: Entity path, e.g. ``"audit"`` or ``"audit/$DeadLetterQueue"``.
        settings: Behaviour.
        dead_letter_queue: Where dead-lettered messages go (``None``: dead-lettering is
            refused).
        is_dead_letter_queue: Whether this is a ``$DeadLetterQueue`` (sending is refused,
            time to live is not observed).
    """

    def __init__(
        self,
        name: str,
        settings: EntitySettings,
        *,
        dead_letter_queue: Entity | None = None,
        is_dead_letter_queue: bool = False,
    ) -> None:
        self.name = name
        self.key = name.lower()
        self._is_dead_letter_queue = is_dead_letter_queue
        self.settings = settings
        self.dead_letter_queue = dead_letter_queue
        #: Called (synchronously) when messages may have become available to receivers.
        self.on_available: Callable[[Entity], None] | None = None
        #: Called when a session lock expired: ``(entity, session, former owner)``.
        self.on_session_lost: Callable[[Entity, SessionInfo, object], None] | None = None
        #: Receives durable changes; ``None`` keeps everything in memory only.
        self.journal: Journal | None = None
        self._next_sequence = 1
        self._messages: dict[int, StoredMessage] = {}
        self._available: list[int] = []
        self._sessions: dict[str, SessionInfo] = {}
        self._session_tokens: dict[str, set[uuid.UUID]] = {}
        self._ready: dict[str, None] = {}  # sessions that may have messages and no owner
        self._locks: dict[uuid.UUID, StoredMessage] = {}
        self._tiebreak = itertools.count()
        self._lock_deadlines: list[tuple[float, int, uuid.UUID]] = []
        self._session_deadlines: list[tuple[float, int, str, int]] = []
        self._schedule: list[tuple[float, int]] = []
        self._expiries: list[tuple[float, int]] = []
        window = settings.duplicate_detection_window
        self._dedup = DuplicateDetector(window) if window is not None else None

    # --- introspection --------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of messages held in any state (active, locked, deferred, scheduled)."""
        return len(self._messages)

    def get(self, sequence_number: int) -> StoredMessage | None:
        """The message with ``sequence_number``, if held."""
        return self._messages.get(sequence_number)

    @property
    def is_dead_letter_queue(self) -> bool:
        """Whether this entity is a ``$DeadLetterQueue`` sub-queue."""
        return self._is_dead_letter_queue

    @property
    def requires_session(self) -> bool:
        """Whether receivers must lock a session (``RequiresSession``)."""
        return self.settings.requires_session

    @property
    def _observes_ttl(self) -> bool:
        # "time-to-live isn't observed" in a dead-letter queue.
        return not self._is_dead_letter_queue

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
            The stored message, or ``None`` if duplicate detection dropped it.

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
        return self._store(content, now, at).sequence_number

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

    def _is_duplicate(self, content: MessageContent, now: float) -> bool:
        if self._dedup is None or content.message_id is None:
            return False
        key = content.message_id
        if self._dedup.is_duplicate(key, now):
            return True
        self._dedup.record(key, now)
        if self.journal is not None:
            self.journal.duplicate_recorded(self.key, key, now)
        return False

    def _take_sequence(self) -> int:
        number = self._next_sequence
        self._next_sequence += 1
        if self.journal is not None:
            self.journal.sequence_advanced(self.key, self._next_sequence)
        return number

    def _effective_ttl(self, content: MessageContent) -> float | None:
        own = content.header.ttl_ms / 1000.0 if content.header.ttl_ms else None
        default = self.settings.default_ttl
        if own is None:
            return default
        return own if default is None else min(own, default)

    def _store(self, content: MessageContent, now: float, at: float | None) -> StoredMessage:
        if content.message_id is None:
            # Azure always delivers a MessageId; clients such as @azure/service-bus rely on it.
            content = content.with_message_id(uuid.uuid4().hex)
        message = StoredMessage(
            sequence_number=self._take_sequence(),
            content=content,
            enqueued_at=now,
            ttl=self._effective_ttl(content),
            session_id=content.session_id,
        )
        self._messages[message.sequence_number] = message
        if at is not None and at > now:
            message.state = MessageState.SCHEDULED
            message.scheduled_at = at
            # Azure reports the scheduled time as the enqueued time once it is active.
            message.enqueued_at = at
            heapq.heappush(self._schedule, (at, message.sequence_number))
            self._stored(message)
        else:
            self._stored(message)
            self._make_available(message)
            self._notify()
        return message

    # --- journal helpers ------------------------------------------------------------------

    def _stored(self, message: StoredMessage) -> None:
        if self.journal is not None:
            self.journal.message_stored(self.key, message)

    def _updated(self, message: StoredMessage) -> None:
        if self.journal is not None:
            self.journal.message_updated(self.key, message)

    def _remove(self, sequence_number: int) -> StoredMessage | None:
        message = self._messages.pop(sequence_number, None)
        if message is not None:
            message.in_available = False
            if self.journal is not None:
                self.journal.message_removed(self.key, sequence_number)
        return message

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
                heapq.heappush(self._schedule, (message.scheduled_at, message.sequence_number))
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

    # --- handing messages out -------------------------------------------------------------

    def _heap(self, session_id: str | None) -> list[int]:
        if not self.requires_session:
            return self._available
        assert session_id is not None
        session = self._session(session_id)
        if session.available is None:
            session.available = []
        return session.available

    def _session(self, session_id: str) -> SessionInfo:
        session = self._sessions.get(session_id)
        if session is None:
            session = SessionInfo(session_id)
            self._sessions[session_id] = session
        return session

    def has_available(self, now: float, session: SessionInfo | None = None) -> bool:
        """Whether :meth:`lock_next` / :meth:`receive_and_delete` would return a message.

        Args:
            now: Current time; messages whose time to live passed are expired on the way.
            session: The locked session (required for session-enabled queues).
        """
        if self.requires_session and session is None:
            return False
        return self._peek_available(session, now) is not None

    def _peek_available(self, session: SessionInfo | None, now: float) -> StoredMessage | None:
        heap = self._heap(session.session_id if session is not None else None)
        while heap:
            message = self._messages.get(heap[0])
            if (
                message is not None
                and message.in_available
                and message.state is MessageState.ACTIVE
                and message.lock_token is None
            ):
                if self._observes_ttl and message.is_expired(now):
                    heapq.heappop(heap)
                    message.in_available = False
                    self._expire_message(message)
                    continue
                return message
            heapq.heappop(heap)
            if message is not None:
                message.in_available = False
        return None

    def _pop_available(self, session: SessionInfo | None, now: float) -> StoredMessage | None:
        message = self._peek_available(session, now)
        if message is not None:
            heapq.heappop(self._heap(session.session_id if session is not None else None))
            message.in_available = False
        return message

    def _make_available(self, message: StoredMessage) -> None:
        message.lock_token = None
        message.locked_until = None
        message.session = None
        if message.in_available:
            return
        message.in_available = True
        session_id = message.session_id if self.requires_session else None
        heapq.heappush(self._heap(session_id), message.sequence_number)
        if session_id is not None:
            session = self._sessions[session_id]
            if session.owner is None:
                self._ready[session_id] = None
        if self._observes_ttl and message.ttl is not None:
            heapq.heappush(
                self._expiries, (message.enqueued_at + message.ttl, message.sequence_number)
            )

    def lock_next(self, now: float, session: SessionInfo | None = None) -> StoredMessage | None:
        """Peek-lock the next available message (lowest sequence number first).

        Args:
            now: Current time.
            session: The receiver's locked session (session-enabled queues only); its
                messages are handed out in sequence order.

        Returns:
            The message with ``lock_token`` and ``locked_until`` set, or ``None``.
        """
        if self.requires_session and (
            session is None or not self._session_lock_valid(session, now)
        ):
            return None
        message = self._pop_available(session, now)
        if message is None:
            return None
        self._lock(message, now, session)
        return message

    def _session_lock_valid(self, session: SessionInfo, now: float) -> bool:
        if session.owner is None:
            return False
        if session.locked_until is not None and session.locked_until <= now:
            self._expire_session_lock(session, now)
            return False
        return True

    def receive_and_delete(
        self, now: float, session: SessionInfo | None = None
    ) -> StoredMessage | None:
        """Remove and return the next available message (RECEIVE_AND_DELETE mode)."""
        if self.requires_session and (
            session is None or not self._session_lock_valid(session, now)
        ):
            return None
        message = self._pop_available(session, now)
        if message is not None:
            self._remove(message.sequence_number)
        return message

    def _lock(self, message: StoredMessage, now: float, session: SessionInfo | None) -> None:
        token = uuid.uuid4()
        message.lock_token = token
        self._locks[token] = message
        if session is not None:
            # Within a session, the session lock is the message lock.
            message.session = session
            message.locked_until = session.locked_until
            self._session_tokens.setdefault(session.session_id, set()).add(token)
        else:
            message.locked_until = now + self.settings.lock_duration
            heapq.heappush(
                self._lock_deadlines, (message.locked_until, next(self._tiebreak), token)
            )
        self._updated(message)

    # --- settlement -----------------------------------------------------------------------

    def _locked(self, token: uuid.UUID, now: float) -> StoredMessage:
        message = self._locks.get(token)
        if message is None:
            raise MessageLockLostError(
                f"the lock {token} is unknown or expired, or the message was already settled"
            )
        session = message.session
        if session is not None:
            if session.locked_until is not None and session.locked_until <= now:
                self._expire_session_lock(session, now)
                raise SessionLockLostError(f"the lock of session {session.session_id!r} expired")
            return message
        if message.locked_until is not None and message.locked_until <= now:
            self._expire_lock(message)
            self._notify()
            raise MessageLockLostError(f"the lock {token} expired")
        return message

    def _unlock(self, message: StoredMessage) -> None:
        token = message.lock_token
        if token is not None:
            self._locks.pop(token, None)
            if message.session is not None:
                tokens = self._session_tokens.get(message.session.session_id)
                if tokens is not None:
                    tokens.discard(token)
        message.lock_token = None
        message.locked_until = None
        message.session = None

    def lock_token_session(self, token: uuid.UUID) -> str | None:
        """The session id whose lock covers ``token``, if it is a session message lock."""
        message = self._locks.get(token)
        if message is None or message.session is None:
            return None
        return message.session.session_id

    def complete(self, token: uuid.UUID, now: float) -> None:
        """Remove the locked message (``accepted`` / ``completed``).

        Raises:
            MessageLockLostError: unknown or expired lock.
            SessionLockLostError: the covering session lock expired.
        """
        message = self._locked(token, now)
        self._unlock(message)
        self._remove(message.sequence_number)

    def abandon(
        self, token: uuid.UUID, now: float, properties_to_modify: Mapping[str, Any] | None = None
    ) -> None:
        """Give the message back: delivery count +1, available again (a deferred message stays
        deferred), or dead-lettered once it reaches ``MaxDeliveryCount``.

        Raises:
            MessageLockLostError: unknown or expired lock.
            SessionLockLostError: the covering session lock expired.
        """
        message = self._locked(token, now)
        self._modify(message, properties_to_modify)
        self._unlock(message)
        self._count_failed_delivery(message)
        self._notify()

    def release(self, token: uuid.UUID, now: float) -> None:
        """Give the message back *without* counting a delivery (AMQP ``released``: the
        client never handed it to the application).

        Raises:
            MessageLockLostError: unknown or expired lock.
            SessionLockLostError: the covering session lock expired.
        """
        message = self._locked(token, now)
        self._unlock(message)
        if message.state is MessageState.ACTIVE:
            self._make_available(message)
        self._updated(message)
        self._notify()

    def defer(
        self, token: uuid.UUID, now: float, properties_to_modify: Mapping[str, Any] | None = None
    ) -> None:
        """Set the message aside as deferred; only receive-by-sequence-number returns it.

        Raises:
            MessageLockLostError: unknown or expired lock.
            SessionLockLostError: the covering session lock expired.
        """
        message = self._locked(token, now)
        self._modify(message, properties_to_modify)
        self._unlock(message)
        message.state = MessageState.DEFERRED
        self._updated(message)

    def dead_letter(
        self,
        token: uuid.UUID,
        now: float,
        reason: str | None,
        description: str | None,
        properties_to_modify: Mapping[str, Any] | None = None,
    ) -> None:
        """Move the locked message to the dead-letter queue with ``DeadLetterReason`` and
        ``DeadLetterErrorDescription`` application properties.

        Raises:
            MessageLockLostError: unknown or expired lock.
            SessionLockLostError: the covering session lock expired.
            InvalidOperationError: the message is already in a dead-letter queue.
        """
        if self.dead_letter_queue is None:
            raise InvalidOperationError(
                "cannot dead-letter a message in a dead-letter queue"
                if self._is_dead_letter_queue
                else f"{self.name} has no dead-letter queue"
            )
        message = self._locked(token, now)
        self._modify(message, properties_to_modify)
        self._unlock(message)
        self._move_to_dead_letter(message, reason, description)

    def _modify(self, message: StoredMessage, properties: Mapping[str, Any] | None) -> None:
        if properties:
            message.content = message.content.with_application_properties(properties)
            self._stored(message)

    def renew_lock(self, token: uuid.UUID, now: float) -> float:
        """Extend the lock by ``LockDuration`` from ``now``.

        Returns:
            The new ``locked_until`` (seconds since the epoch).

        Raises:
            MessageLockLostError: unknown or expired lock.
            InvalidOperationError: the lock is a session message lock (renew the session).
        """
        message = self._locked(token, now)
        if message.session is not None:
            raise InvalidOperationError(
                "The lock of a message in a session is the session lock: renew the session lock."
            )
        message.locked_until = now + self.settings.lock_duration
        heapq.heappush(self._lock_deadlines, (message.locked_until, next(self._tiebreak), token))
        return message.locked_until

    def _mdc_text(self) -> str:
        return (
            f"Message could not be consumed after {self.settings.max_delivery_count} "
            "delivery attempts."
        )

    def _count_failed_delivery(self, message: StoredMessage) -> None:
        message.delivery_count += 1
        limit = self.settings.max_delivery_count
        if (
            limit is not None
            and message.delivery_count >= limit
            and self.dead_letter_queue is not None
        ):
            self._move_to_dead_letter(message, MAX_DELIVERY_COUNT_EXCEEDED, self._mdc_text())
            return
        if message.state is MessageState.ACTIVE:
            self._make_available(message)
        self._updated(message)

    def _move_to_dead_letter(
        self, message: StoredMessage, reason: str | None, description: str | None
    ) -> None:
        assert self.dead_letter_queue is not None
        self._remove(message.sequence_number)
        message.content = message.content.with_application_properties(
            {"DeadLetterReason": reason, "DeadLetterErrorDescription": description}
        )
        self.dead_letter_queue._accept_dead_lettered(message)

    def _accept_dead_lettered(self, message: StoredMessage) -> None:
        # The message keeps its sequence number: the dead-letter queue is a sub-queue of
        # the same entity, not a new submission.
        message.state = MessageState.ACTIVE
        message.scheduled_at = None
        message.lock_token = None
        message.locked_until = None
        message.session = None
        message.in_available = False
        self._messages[message.sequence_number] = message
        self._stored(message)
        self._make_available(message)
        self._notify()

    def _expire_message(self, message: StoredMessage) -> None:
        """Time to live passed: dead-letter (``DeadLetteringOnMessageExpiration``) or drop."""
        if self.settings.dead_lettering_on_expiration and self.dead_letter_queue is not None:
            self._move_to_dead_letter(
                message, TTL_EXPIRED, "The message expired and was dead lettered."
            )
        else:
            self._remove(message.sequence_number)

    # --- deferred messages ----------------------------------------------------------------

    def receive_deferred(
        self,
        sequence_numbers: Iterable[int],
        now: float,
        *,
        session: SessionInfo | None = None,
        receive_and_delete: bool = False,
    ) -> list[StoredMessage]:
        """Lock (or remove) deferred messages by sequence number
        (management ``receive-by-sequence-number``).

        A deferred message whose time to live passed is expired now, as Azure does when one
        tries to receive it, and counts as not found.

        Raises:
            MessageNotFoundError: a number is not a deferred, unlocked message (of
                ``session``); nothing is locked.
            InvalidOperationError: a session-enabled queue without a session.
        """
        numbers = list(dict.fromkeys(int(n) for n in sequence_numbers))
        if self.requires_session and session is None:
            raise InvalidOperationError("a session-enabled queue needs a session-id")
        found = []
        for number in numbers:
            message = self._messages.get(number)
            if (
                message is None
                or message.state is not MessageState.DEFERRED
                or message.lock_token is not None
                or (session is not None and message.session_id != session.session_id)
            ):
                raise MessageNotFoundError(
                    "Failed to lock one or more specified messages. Either the message is "
                    f"already locked or does not exist (sequence number {number})."
                )
            found.append(message)
        expired = [m for m in found if self._observes_ttl and m.is_expired(now)]
        if expired:
            for message in expired:
                self._expire_message(message)
            raise MessageNotFoundError(f"the deferred message {expired[0].sequence_number} expired")
        for message in found:
            if receive_and_delete:
                self._remove(message.sequence_number)
            else:
                self._lock(message, now, session)
        return found

    # --- sessions -------------------------------------------------------------------------

    def accept_session(
        self, session_id: str | None, owner: object, scope: object, now: float
    ) -> SessionInfo | None:
        """Lock a session for a receiver.

        Args:
            session_id: The session to lock, or ``None`` for the next available one (a
                session with available messages and no owner).
            owner: The receiver (released with :meth:`release_session`).
            scope: The receiver's connection; management requests on it may use the session.
            now: Current time.

        Returns:
            The locked session, or ``None`` if ``session_id`` is ``None`` and no session is
            available now.

        Raises:
            SessionCannotBeLockedError: another receiver holds the session.
        """
        if session_id is None:
            session = self._next_ready_session(now)
            if session is None:
                return None
        else:
            session = self._session(session_id)
            if session.owner is not None:
                if session.locked_until is not None and session.locked_until > now:
                    raise SessionCannotBeLockedError(
                        f"The requested session '{session_id}' cannot be accepted. It may be "
                        "locked by another receiver."
                    )
                self._expire_session_lock(session, now, notify=False)
                session = self._session(session_id)  # the expired one may have been forgotten
        self._ready.pop(session.session_id, None)
        session.owner = owner
        session.owner_scope = scope
        session.lock_generation += 1
        session.locked_until = now + self.settings.lock_duration
        heapq.heappush(
            self._session_deadlines,
            (
                session.locked_until,
                next(self._tiebreak),
                session.session_id,
                session.lock_generation,
            ),
        )
        return session

    def _next_ready_session(self, now: float) -> SessionInfo | None:
        for session_id in list(self._ready):
            session = self._sessions.get(session_id)
            if session is None or session.owner is not None:
                del self._ready[session_id]
                continue
            if self._peek_available(session, now) is None:
                del self._ready[session_id]
                continue
            return session
        return None

    def has_ready_session(self, now: float) -> bool:
        """Whether a next-available session receiver would get a session now."""
        return self._next_ready_session(now) is not None

    def release_session(self, session: SessionInfo, owner: object) -> None:
        """The receiver closed: unlock its session. Its unsettled messages count a failed
        delivery and become available again (in order)."""
        if session.owner is None or session.owner != owner:
            return
        self._unlock_session(session)
        self._notify()

    def _unlock_session(self, session: SessionInfo) -> None:
        tokens = self._session_tokens.pop(session.session_id, set())
        messages = sorted(
            (m for m in (self._locks.get(t) for t in tokens) if m is not None),
            key=lambda m: m.sequence_number,
        )
        for message in messages:
            self._unlock(message)
            self._count_failed_delivery(message)
        session.owner = None
        session.owner_scope = None
        session.locked_until = None
        session.lock_generation += 1
        if session.available:
            self._ready[session.session_id] = None
        else:
            self._forget_session_if_unused(session)

    def _forget_session_if_unused(self, session: SessionInfo) -> None:
        if session.owner is None and session.state is None and not session.available:
            self._sessions.pop(session.session_id, None)
            self._ready.pop(session.session_id, None)

    def _expire_session_lock(self, session: SessionInfo, now: float, notify: bool = True) -> None:
        owner = session.owner
        if owner is None:
            return
        self._unlock_session(session)
        if self.on_session_lost is not None:
            self.on_session_lost(self, session, owner)
        if notify:
            self._notify()

    def require_session(self, session_id: str, scope: object, now: float) -> SessionInfo:
        """The session ``session_id``, checked to be locked by a receiver on ``scope``.

        Raises:
            SessionLockLostError: not locked, lock expired, or held on another connection.
        """
        session = self._sessions.get(session_id)
        if session is None or session.owner is None or session.owner_scope != scope:
            raise SessionLockLostError(
                f"The session lock for session '{session_id}' is not held by this receiver."
            )
        if session.locked_until is not None and session.locked_until <= now:
            self._expire_session_lock(session, now)
            raise SessionLockLostError(f"The session lock for session '{session_id}' expired.")
        return session

    def renew_session_lock(self, session_id: str, scope: object, now: float) -> float:
        """Extend a session lock by ``LockDuration`` from ``now``; returns the new expiry.

        Raises:
            SessionLockLostError: see :meth:`require_session`.
        """
        session = self.require_session(session_id, scope, now)
        session.locked_until = now + self.settings.lock_duration
        heapq.heappush(
            self._session_deadlines,
            (session.locked_until, next(self._tiebreak), session_id, session.lock_generation),
        )
        for token in self._session_tokens.get(session_id, ()):
            message = self._locks.get(token)
            if message is not None:
                message.locked_until = session.locked_until
        return session.locked_until

    def get_session_state(self, session_id: str, scope: object, now: float) -> bytes | None:
        """The session's state (``None`` if never set).

        Raises:
            SessionLockLostError: see :meth:`require_session`.
        """
        return self.require_session(session_id, scope, now).state

    def set_session_state(
        self, session_id: str, state: bytes | None, scope: object, now: float
    ) -> None:
        """Replace the session's state (``None`` clears it).

        Raises:
            SessionLockLostError: see :meth:`require_session`.
        """
        session = self.require_session(session_id, scope, now)
        session.state = state
        session.updated_at = now
        if self.journal is not None:
            self.journal.session_changed(self.key, session)

    def list_sessions(self, updated_since: float | None, skip: int, top: int) -> list[str]:
        """Session ids for ``get-message-sessions``.

        Args:
            updated_since: ``None`` (the client sent ``DateTime.MaxValue``) for every session
                that holds messages or has state; otherwise the sessions whose state was set
                after this time.
            skip: Ids to skip (paging).
            top: Most ids to return.

        Raises:
            InvalidOperationError: the entity does not require sessions.
            ArgumentError: negative ``skip`` or ``top``.
        """
        if not self.requires_session:
            raise InvalidOperationError("The entity does not require sessions.")
        if top < 0 or skip < 0:
            raise ArgumentError("skip and top must not be negative")
        if updated_since is None:
            wanted = {m.session_id for m in self._messages.values() if m.session_id}
            wanted.update(s.session_id for s in self._sessions.values() if s.state is not None)
            ids = [s for s in self._sessions if s in wanted]
            ids += sorted(wanted.difference(ids))
        else:
            ids = [
                s.session_id
                for s in self._sessions.values()
                if s.state is not None and s.updated_at > updated_since
            ]
        return ids[skip : skip + top]

    def restored_session(self, session_id: str) -> SessionInfo | None:
        """A session known to the entity (for tests and the store)."""
        return self._sessions.get(session_id)

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
        while self._lock_deadlines:
            deadline, _, token = self._lock_deadlines[0]
            message = self._locks.get(token)
            if message is not None and message.session is None and message.locked_until == deadline:
                break
            heapq.heappop(self._lock_deadlines)
        while self._session_deadlines:
            deadline, _, session_id, generation = self._session_deadlines[0]
            session = self._sessions.get(session_id)
            if (
                session is not None
                and session.owner is not None
                and session.lock_generation == generation
                and session.locked_until == deadline
            ):
                break
            heapq.heappop(self._session_deadlines)
        while self._schedule:
            at, number = self._schedule[0]
            message = self._messages.get(number)
            if (
                message is not None
                and message.state is MessageState.SCHEDULED
                and message.scheduled_at == at
            ):
                break
            heapq.heappop(self._schedule)
        while self._expiries:
            at, number = self._expiries[0]
            message = self._messages.get(number)
            if (
                message is not None
                and message.in_available
                and message.lock_token is None
                and message.state is MessageState.ACTIVE
                and message.expires_at == at
            ):
                break
            heapq.heappop(self._expiries)
        candidates = [
            heap[0][0]
            for heap in (
                self._lock_deadlines,
                self._session_deadlines,
                self._schedule,
                self._expiries,
            )
            if heap
        ]
        return min(candidates) if candidates else None

    def process_due(self, now: float) -> None:
        """Expire locks and session locks, activate scheduled messages and expire messages
        whose time to live passed, for everything due at ``now``."""
        changed = False
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > now:
                break
            changed = True
            if self._lock_deadlines and self._lock_deadlines[0][0] == deadline:
                _, _, token = heapq.heappop(self._lock_deadlines)
                self._expire_lock(self._locks[token])
            elif self._session_deadlines and self._session_deadlines[0][0] == deadline:
                _, _, session_id, _ = heapq.heappop(self._session_deadlines)
                self._expire_session_lock(self._sessions[session_id], now)
            elif self._schedule and self._schedule[0][0] == deadline:
                at, number = heapq.heappop(self._schedule)
                message = self._messages[number]
                message.state = MessageState.ACTIVE
                message.scheduled_at = None
                message.enqueued_at = at
                self._updated(message)
                self._make_available(message)
            else:
                _, number = heapq.heappop(self._expiries)
                message = self._messages[number]
                message.in_available = False
                self._expire_message(message)
        if changed:
            self._notify()

    def _expire_lock(self, message: StoredMessage) -> None:
        self._unlock(message)
        self._count_failed_delivery(message)

    def _notify(self) -> None:
        if self.on_available is not None:
            self.on_available(self)
