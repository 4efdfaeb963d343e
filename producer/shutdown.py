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
from typing import Final

from common import shutdown
from common.shutdown import MIN_CLOSE_TIME, split_reserves

__all__ = ["CLOSE_RESERVE", "MIN_CLOSE_TIME", "ShutdownDeadline"]

CLOSE_RESERVE: Final = 2.0
"""Seconds before the deadline kept for releasing leases and closing (step 2), at most half
the grace period. Closing every sender at once takes well under a second when Service Bus
answers."""


class ShutdownDeadline(shutdown.ShutdownDeadline):
    """The producer's deadline (:class:`common.shutdown.ShutdownDeadline`) and its reserve.

    Args:
        grace: Seconds from :meth:`start` to the deadline (``PRODUCER_SHUTDOWN_GRACE``).
        clock: Monotonic seconds (``time.monotonic``; not the event loop's clock, which
            uvloop keeps on its own scale).
    """

    @property
    def reserve(self) -> float:
        """Seconds before the deadline when step 2 starts at the latest."""
        [reserve] = split_reserves(self.grace, CLOSE_RESERVE)
        return reserve

    def work_left(self) -> float:
        """Seconds left for step 1 (requests, publishes, relay): never negative."""
        return max(0.0, self.left() - self.reserve)

    def http_drain_seconds(self) -> int:
        """uvicorn's ``timeout_graceful_shutdown`` for step 1: whole seconds, rounded down.

        uvicorn starts counting up to 0.2 s after the signal (it looks every 0.1 s, then
        lets connections see the shutdown for 0.1 s); the reserve absorbs that.
        """
        return math.floor(max(0.0, self.grace - self.reserve))
