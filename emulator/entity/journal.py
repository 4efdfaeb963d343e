"""The interface through which an entity reports every durable change."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

from emulator.model import SessionInfo, StoredMessage

__all__ = ["Journal"]


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
