"""The core of an entity: the messages it holds and the primitives every operation uses.

Sequence numbers, the journal, duplicate detection, the available heaps (one per queue,
or one per session), message locks, failed-delivery counting and moves to the dead-letter
queue. The public operations are layered on top: :mod:`emulator.entity.session_locks`,
:mod:`emulator.entity.settlement`, :mod:`emulator.entity.queue`.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Self

from proton import symbol

from emulator.codec import MessageContent
from emulator.dedup import DuplicateDetector
from emulator.entity.deadlines import Deadlines
from emulator.entity.forwarding import MAX_FORWARDING_HOPS, Destination
from emulator.entity.journal import Journal
from emulator.entity.settings import MAX_DELIVERY_COUNT_EXCEEDED, TTL_EXPIRED, EntitySettings
from emulator.model import MessageState, SessionInfo, StoredMessage

__all__ = ["MessageStore"]

#: Annotation naming the entity whose dead-lettered message was auto-forwarded
#: (``ServiceBusReceivedMessage.dead_letter_source``).
X_OPT_DEADLETTER_SOURCE = symbol("x-opt-deadletter-source")


class MessageStore:
    """A queue, or a queue's ``$DeadLetterQueue``: state and primitives.

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
        dead_letter_queue: Self | None = None,
        is_dead_letter_queue: bool = False,
    ) -> None:
        self.name = name
        self.key = name.lower()
        self._is_dead_letter_queue = is_dead_letter_queue
        self.settings = settings
        self.dead_letter_queue = dead_letter_queue
        #: Called (synchronously) when messages may have become available to receivers.
        self.on_available: Callable[[Self], None] | None = None
        #: Called when a session lock expired: ``(entity, session, former owner)``.
        self.on_session_lost: Callable[[Self, SessionInfo, object], None] | None = None
        #: Receives durable changes; ``None`` keeps everything in memory only.
        self.journal: Journal | None = None
        #: ``ForwardTo``: where arriving messages move (see :mod:`~emulator.entity.forwarding`).
        self.forward_to: Destination | None = None
        #: ``ForwardDeadLetteredMessagesTo``: where dead-lettered messages move.
        self.forward_dead_lettered_to: Destination | None = None
        #: Seconds since the epoch; dates a dead-lettered message forwarded elsewhere.
        self.clock: Callable[[], float] = time.time
        self._next_sequence = 1
        self._messages: dict[int, StoredMessage] = {}
        self._available: list[int] = []
        self._sessions: dict[str, SessionInfo] = {}
        self._session_tokens: dict[str, set[uuid.UUID]] = {}
        self._ready: dict[str, None] = {}  # sessions that may have messages and no owner
        self._locks: dict[uuid.UUID, StoredMessage] = {}
        self._deadlines = Deadlines(self._messages, self._locks, self._sessions)
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

    def _notify(self: Self) -> None:
        if self.on_available is not None:
            self.on_available(self)

    # --- numbering, duplicates, journal ---------------------------------------------------

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

    # --- available heaps ------------------------------------------------------------------

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
            self._deadlines.add_expiry(message.sequence_number, message.enqueued_at + message.ttl)

    # --- message locks --------------------------------------------------------------------

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
            self._deadlines.add_lock(token, message.locked_until)
        self._updated(message)

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

    def _expire_lock(self, message: StoredMessage) -> None:
        self._unlock(message)
        self._count_failed_delivery(message)

    # --- failed deliveries, dead-lettering, expiry ----------------------------------------

    def _modify(self, message: StoredMessage, properties: Mapping[str, Any] | None) -> None:
        if properties:
            message.content = message.content.with_application_properties(properties)
            self._stored(message)

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
        self,
        message: StoredMessage,
        reason: str | None,
        description: str | None,
        *,
        hops: int = 0,
    ) -> None:
        """Move to the dead-letter queue, or on to ``forward_dead_lettered_to`` unless the
        message already made ``hops`` of the :data:`MAX_FORWARDING_HOPS` allowed."""
        assert self.dead_letter_queue is not None
        self._remove(message.sequence_number)
        message.content = message.content.with_application_properties(
            {"DeadLetterReason": reason, "DeadLetterErrorDescription": description}
        )
        target = self.forward_dead_lettered_to
        if target is not None and hops < MAX_FORWARDING_HOPS:
            content = message.content
            annotations = {**content.annotations, X_OPT_DEADLETTER_SOURCE: self.name}
            target.accept_forwarded(
                replace(content, annotations=annotations), self.clock(), hops + 1
            )
            return
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
