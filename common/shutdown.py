"""One shutdown deadline per process, shared by the producer and the consumer.

Container Apps sends SIGTERM and kills the replica when its grace period is over
(https://learn.microsoft.com/azure/container-apps/application-lifecycle-management#shutdown).
Each process fixes one deadline at the signal, keeps reserves before it for the steps
that must still run (abandoning, closing), and gives closes a minimum even when the
deadline has passed. What the reserves are for is each process's own business
(``producer.shutdown``, ``consumer.runtime.worker``).
"""

import time
from collections.abc import Callable
from typing import Final

MIN_CLOSE_TIME: Final = 0.5
"""Seconds closes get at least, even when the deadline is nearer (a tiny grace period)."""


def split_reserves(grace: float, *reserves: float) -> tuple[float, ...]:
    """``reserves`` (seconds), shrunk together to at most half of ``grace``.

    The work before the reserves keeps at least the other half of the grace period.

    Args:
        grace: The grace period, seconds (>= 0).
        reserves: Seconds wanted before the deadline, one per step.

    Returns:
        The reserves in the same order, each scaled by the same factor (<= 1).
    """
    total = sum(reserves)
    scale = min(1.0, grace / 2 / total) if total > 0 else 1.0
    return tuple(reserve * scale for reserve in reserves)


class ShutdownDeadline:
    """The deadline of one shutdown, fixed the first time :meth:`start` is called.

    Args:
        grace: Seconds from :meth:`start` to the deadline (negative counts as 0).
        clock: Monotonic seconds. ``time.monotonic`` by default; the consumer passes its
            event loop's clock so the deadline works with ``asyncio.timeout_at``.
    """

    def __init__(self, grace: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = max(0.0, grace)
        self._clock = clock
        self._at: float | None = None

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called."""
        return self._at is not None

    @property
    def at(self) -> float | None:
        """The deadline on ``clock``'s scale; ``None`` before :meth:`start`."""
        return self._at

    def start(self) -> None:
        """Fix the deadline ``grace`` seconds from now; later calls change nothing.

        Safe in a signal handler (arithmetic only).
        """
        if self._at is None:
            self._at = self._clock() + self.grace

    def left(self) -> float:
        """Seconds until the deadline: negative once past, ``grace`` before :meth:`start`."""
        if self._at is None:
            return self.grace
        return self._at - self._clock()

    def close_left(self) -> float:
        """Seconds left for closing: what is left, at least :data:`MIN_CLOSE_TIME`."""
        return max(MIN_CLOSE_TIME, self.left())

    def keep_close_time(self) -> float:
        """Move the deadline so that at least :data:`MIN_CLOSE_TIME` is left; return it.

        For a process whose later steps (closing the client) read the deadline again:
        they then get the moved one, as the closes did. Starts the deadline if needed.
        """
        self.start()
        now = self._clock()
        assert self._at is not None
        if self._at - now < MIN_CLOSE_TIME:
            self._at = now + MIN_CLOSE_TIME
        return self._at
