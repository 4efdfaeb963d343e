"""Session locks: one receiver at a time per session, and the session's state.

Source: https://learn.microsoft.com/azure/service-bus-messaging/message-sessions

While a receiver holds a session's lock, the lock of each message it receives in that
session is the session lock: renewing or losing the session lock renews or loses them all.
"""

from __future__ import annotations

from typing import Self

from emulator.entity.message_store import MessageStore
from emulator.errors import (
    ArgumentError,
    InvalidOperationError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from emulator.model import SessionInfo

__all__ = ["SessionLocks"]


class SessionLocks(MessageStore):
    """Locking, renewing, releasing and expiring sessions; session state and listing."""

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
        self._deadlines.add_session_lock(session, session.locked_until)
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

    def _expire_session_lock(
        self: Self, session: SessionInfo, now: float, notify: bool = True
    ) -> None:
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
        self._deadlines.add_session_lock(session, session.locked_until)
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

    def _session_lock_valid(self, session: SessionInfo, now: float) -> bool:
        if session.owner is None:
            return False
        if session.locked_until is not None and session.locked_until <= now:
            self._expire_session_lock(session, now)
            return False
        return True
