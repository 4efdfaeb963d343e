"""An entity's timers: lock expiry, session lock expiry, scheduled activation and TTL.

Each timer is a heap with lazy deletion: renewing a lock, settling or moving a message
never searches a heap; a stale entry is recognised (its message, lock or session no
longer matches it) and dropped when it reaches the top. Times are seconds since the
epoch (UTC).
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from dataclasses import dataclass

from emulator.model import MessageState, SessionInfo, StoredMessage

__all__ = [
    "Deadlines",
    "Due",
    "LockExpired",
    "ScheduledDue",
    "SessionLockExpired",
    "TtlExpired",
]


@dataclass(frozen=True, slots=True)
class LockExpired:
    """The peek-lock ``lock_token`` (not a session message's) passed its ``locked_until``."""

    lock_token: uuid.UUID


@dataclass(frozen=True, slots=True)
class SessionLockExpired:
    """The lock of session ``session_id`` passed its ``locked_until``."""

    session_id: str


@dataclass(frozen=True, slots=True)
class ScheduledDue:
    """The scheduled message ``sequence_number`` becomes active at ``at``."""

    sequence_number: int
    at: float


@dataclass(frozen=True, slots=True)
class TtlExpired:
    """The available message ``sequence_number`` outlived its time to live."""

    sequence_number: int


Due = LockExpired | SessionLockExpired | ScheduledDue | TtlExpired


class Deadlines:
    """The four timer heaps of one entity.

    Args:
        messages: The entity's messages by sequence number (read, never changed).
        locks: The entity's locked messages by lock token (read, never changed).
        sessions: The entity's sessions by id (read, never changed).
    """

    def __init__(
        self,
        messages: dict[int, StoredMessage],
        locks: dict[uuid.UUID, StoredMessage],
        sessions: dict[str, SessionInfo],
    ) -> None:
        self._messages = messages
        self._locks = locks
        self._sessions = sessions
        self._tiebreak = itertools.count()
        self._lock_deadlines: list[tuple[float, int, uuid.UUID]] = []
        self._session_deadlines: list[tuple[float, int, str, int]] = []
        self._schedule: list[tuple[float, int]] = []
        self._expiries: list[tuple[float, int]] = []

    def add_lock(self, token: uuid.UUID, locked_until: float) -> None:
        """Expire the message lock ``token`` at ``locked_until`` unless renewed or released."""
        heapq.heappush(self._lock_deadlines, (locked_until, next(self._tiebreak), token))

    def add_session_lock(self, session: SessionInfo, locked_until: float) -> None:
        """Expire the session's current lock at ``locked_until`` unless renewed or released."""
        heapq.heappush(
            self._session_deadlines,
            (locked_until, next(self._tiebreak), session.session_id, session.lock_generation),
        )

    def add_scheduled(self, sequence_number: int, at: float) -> None:
        """Activate the scheduled message at ``at``."""
        heapq.heappush(self._schedule, (at, sequence_number))

    def add_expiry(self, sequence_number: int, at: float) -> None:
        """Expire the message at ``at`` if it is still available then."""
        heapq.heappush(self._expiries, (at, sequence_number))

    def next(self) -> float | None:
        """The earliest live deadline, or ``None``; stale entries on top are dropped."""
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

    def pop_due(self, now: float) -> Due | None:
        """Remove and return the earliest deadline if it is due at ``now``.

        On a tie, lock expiry comes first, then session locks, scheduled messages and TTL.
        """
        deadline = self.next()
        if deadline is None or deadline > now:
            return None
        if self._lock_deadlines and self._lock_deadlines[0][0] == deadline:
            _, _, token = heapq.heappop(self._lock_deadlines)
            return LockExpired(token)
        if self._session_deadlines and self._session_deadlines[0][0] == deadline:
            _, _, session_id, _ = heapq.heappop(self._session_deadlines)
            return SessionLockExpired(session_id)
        if self._schedule and self._schedule[0][0] == deadline:
            at, number = heapq.heappop(self._schedule)
            return ScheduledDue(number, at)
        _, number = heapq.heappop(self._expiries)
        return TtlExpired(number)
