"""One deadline for the producer's whole shutdown.

Container Apps sends SIGTERM and kills the replica 30 s later
(https://learn.microsoft.com/azure/container-apps/application-lifecycle-management#shutdown).
Everything the producer does on the way out runs against one deadline,
``PRODUCER_SHUTDOWN_GRACE`` after the signal (after the lifespan's exit when no signal
started it, e.g. a library user's own server):

1. until the deadline minus :attr:`ShutdownDeadline.reserve`: HTTP requests finish
   (uvicorn's graceful shutdown), then in-flight publishes, the relay loops and the
   pruner; whatever still runs then is cancelled;
2. the reserve: releasing this process's outbox leases and recording the published marks
   (database) while the senders and the client close (Service Bus), all at once, given up
   at the deadline;
3. telemetry gets what is left, at most ``common.telemetry.SHUTDOWN_TIMEOUT``.

Nothing accepted is lost by giving up: an accepted event is a committed outbox row, and
every row not marked ``published`` is sent again by a relay (this replica's at its next
start, or another's once the lease is released or runs out); the message id is the event
id, so Service Bus duplicate detection drops a copy of one that did reach the queue.
"""

import math
import time
from collections.abc import Callable
from typing import Final

CLOSE_RESERVE: Final = 2.0
"""Seconds before the deadline kept for releasing leases and closing (step 2), at most half
the grace period. Closing every sender at once takes well under a second when Service Bus
answers."""
MIN_CLOSE_TIME: Final = 0.5
"""Seconds closes get at least, even when the deadline has passed (a tiny grace period)."""


class ShutdownDeadline:
    """The deadline of one shutdown, fixed the first time :meth:`start` is called.

    Args:
        grace: Seconds from :meth:`start` to the deadline (``PRODUCER_SHUTDOWN_GRACE``).
        clock: Monotonic seconds (``time.monotonic``; not the event loop's clock, which
            uvloop keeps on its own scale).
    """

    def __init__(self, grace: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = max(0.0, grace)
        self._clock = clock
        self._at: float | None = None

    @property
    def reserve(self) -> float:
        """Seconds before the deadline when step 2 starts at the latest."""
        return min(CLOSE_RESERVE, self.grace / 2)

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called."""
        return self._at is not None

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

    def work_left(self) -> float:
        """Seconds left for step 1 (requests, publishes, relay): never negative."""
        return max(0.0, self.left() - self.reserve)

    def close_left(self) -> float:
        """Seconds left for step 2: what is left, at least :data:`MIN_CLOSE_TIME`."""
        return max(MIN_CLOSE_TIME, self.left())

    def http_drain_seconds(self) -> int:
        """uvicorn's ``timeout_graceful_shutdown`` for step 1: whole seconds, rounded down.

        uvicorn starts counting up to 0.2 s after the signal (it looks every 0.1 s, then
        lets connections see the shutdown for 0.1 s); the reserve absorbs that.
        """
        return math.floor(max(0.0, self.grace - self.reserve))
