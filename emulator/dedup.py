"""Duplicate detection history for one queue.

Mirrors https://learn.microsoft.com/azure/service-bus-messaging/duplicate-detection: a
message whose ``message-id`` was already seen within the history window is accepted by the
service but silently dropped. Time is in seconds since the epoch (UTC), like everywhere in
the emulator core.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

__all__ = ["DuplicateDetector"]


class DuplicateDetector:
    """Remembers message ids for ``window`` seconds.

    ``check_and_record`` is amortised O(1): ids expire in arrival order from a deque.
    """

    def __init__(self, window: float) -> None:
        """Args:
        window: History window in seconds (``DuplicateDetectionHistoryTimeWindow``).
        """
        self._window = window
        self._seen: dict[Hashable, float] = {}
        self._order: deque[tuple[float, Hashable]] = deque()

    def _expire(self, now: float) -> None:
        horizon = now - self._window
        while self._order and self._order[0][0] <= horizon:
            seen_at, key = self._order.popleft()
            if self._seen.get(key) == seen_at:
                del self._seen[key]

    def is_duplicate(self, message_id: Hashable, now: float) -> bool:
        """Whether ``message_id`` was recorded within the window ending at ``now``."""
        self._expire(now)
        return message_id in self._seen

    def record(self, message_id: Hashable, now: float) -> None:
        """Remember ``message_id`` as seen at ``now`` (seconds since the epoch)."""
        self._expire(now)
        if message_id in self._seen:
            return
        self._seen[message_id] = now
        self._order.append((now, message_id))

    def __len__(self) -> int:
        return len(self._seen)
