"""Handing messages out (peek-lock, receive-and-delete, deferred) and settling them.

Source: https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement
and https://learn.microsoft.com/azure/service-bus-messaging/message-deferral
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from emulator.entity.session_locks import SessionLocks
from emulator.errors import (
    InvalidOperationError,
    MessageLockLostError,
    MessageNotFoundError,
    SessionLockLostError,
)
from emulator.model import MessageState, SessionInfo, StoredMessage

__all__ = ["Settlement"]


class Settlement(SessionLocks):
    """Receiving and settling: lock, complete, abandon, release, defer, dead-letter, renew."""

    # --- handing messages out -------------------------------------------------------------

    def has_available(self, now: float, session: SessionInfo | None = None) -> bool:
        """Whether :meth:`lock_next` / :meth:`receive_and_delete` would return a message.

        Args:
            now: Current time; messages whose time to live passed are expired on the way.
            session: The locked session (required for session-enabled queues).
        """
        if self.requires_session and session is None:
            return False
        return self._peek_available(session, now) is not None

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
        self._deadlines.add_lock(token, message.locked_until)
        return message.locked_until

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
