"""All queues of one process, and graceful shutdown.

Shutdown (SIGTERM, as Container Apps sends before it kills a replica,
https://learn.microsoft.com/azure/container-apps/application-lifecycle-management#shutdown)
runs against one deadline (:class:`common.shutdown.ShutdownDeadline`, on the event
loop's clock), ``shutdown_grace_period`` seconds after the stop: readiness
turns false and receiving stops after the receive call in progress; in-flight handlers
get until the deadline minus a reserve (:class:`ShutdownBudget`) to finish and settle;
handlers still running are cancelled and their messages abandoned, so Service Bus hands
them out again at once; then every receiver and sender closes at once, with what is
left (closes still running at the deadline are given up: the connections end with the
process).
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common.shutdown import ShutdownDeadline, split_reserves
from consumer import telemetry
from consumer.runtime.processor import QueueConfig, QueueProcessor
from consumer.runtime.routing import Router
from consumer.runtime.sessions import SessionProcessor
from consumer.runtime.stats import WorkerStats

logger = logging.getLogger(__name__)

ABANDON_RESERVE = 1.5
"""Seconds of the grace period kept for abandoning the messages of cancelled handlers."""
CLOSE_RESERVE = 1.5
"""Seconds of the grace period kept for closing receivers and senders (all at once)."""


@dataclass(frozen=True)
class ShutdownBudget:
    """How a grace period is split. Times are seconds before the deadline.

    Attributes:
        abandon: Handlers still running this long before the deadline are cancelled
            and their messages abandoned.
        close: Receivers and senders start closing at the latest this long before it.
    """

    abandon: float
    close: float

    @classmethod
    def for_grace(cls, grace: float) -> "ShutdownBudget":
        """The reserves, shrunk to half of ``grace`` together so handlers keep the rest."""
        abandon, close = split_reserves(grace, ABANDON_RESERVE, CLOSE_RESERVE)
        return cls(abandon=close + abandon, close=close)


class Worker:
    """Processes several sources (queues, subscriptions) until stopped.

    Args:
        client: The process's long-lived ``ServiceBusClient``.
        queues: Per-source settings; a session source gets a
            :class:`~consumer.runtime.sessions.SessionProcessor`, any other a
            :class:`~consumer.runtime.processor.QueueProcessor`.
        router: Picks the handler of each envelope.
        shutdown_grace_period: Seconds from the stop to the end of :meth:`run`, closes
            included.
    """

    def __init__(
        self,
        client: Any,
        queues: Sequence[QueueConfig],
        router: Router,
        *,
        shutdown_grace_period: float = 25.0,
    ) -> None:
        self.stats = WorkerStats()
        telemetry.observe_stats(self.stats)
        self._grace = shutdown_grace_period
        self._deadline = ShutdownDeadline(shutdown_grace_period, clock=_loop_time)
        self.processors: list[QueueProcessor | SessionProcessor] = [
            (SessionProcessor if config.sessions else QueueProcessor)(
                client, config, router, self.stats.queue(config.name)
            )
            for config in queues
        ]
        self.running = False
        self.stopping = False
        self._budget = ShutdownBudget.for_grace(shutdown_grace_period)

    @property
    def shutdown_deadline(self) -> float | None:
        """Loop time (``loop.time()``, seconds) by which shutdown ends; ``None`` before the stop.

        Set at the stop, ``shutdown_grace_period`` later; moved only to give closes
        :data:`common.shutdown.MIN_CLOSE_TIME`.
        """
        return self._deadline.at

    @property
    def connected(self) -> bool:
        """True when every queue's receiver is attached and healthy."""
        return all(processor.connected for processor in self.processors)

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set, then shut down by :attr:`shutdown_deadline`."""
        self.running = True
        receiving = [
            asyncio.create_task(p.receive_until(stop), name=f"receive:{p.config.name}")
            for p in self.processors
        ]
        try:
            await stop.wait()
            self._start_shutdown()
            await self._drain(receiving)
        finally:
            if self.shutdown_deadline is None:  # failed or cancelled before the stop
                self._start_shutdown()
            for task in receiving:
                task.cancel()
            await asyncio.gather(*receiving, return_exceptions=True)
            await self._close()
            self.running = False
            left = self.deadline_left()
            logger.info(
                "receivers and senders closed %.1f s %s the shutdown deadline",
                abs(left),
                "before" if left >= 0 else "after",
            )

    def deadline_left(self) -> float:
        """Seconds until :attr:`shutdown_deadline` (negative once past; 0 before the stop)."""
        return self._deadline.left() if self._deadline.started else 0.0

    def _start_shutdown(self) -> None:
        self.stopping = True
        self._deadline.start()
        logger.info(
            "stopping: receiving ends; in-flight work has until the shutdown deadline, "
            "%.1f s from now",
            self._grace,
        )

    async def _drain(self, receiving: Sequence[asyncio.Task[None]]) -> None:
        """Let receive calls end and handlers finish; cancel and abandon past the budget."""
        assert self.shutdown_deadline is not None
        deadline = self.shutdown_deadline

        async def drain() -> None:
            await asyncio.gather(*receiving)
            await asyncio.gather(*(p.wait_idle() for p in self.processors))

        drained = asyncio.create_task(drain())
        try:
            async with asyncio.timeout_at(deadline - self._budget.abandon):
                await asyncio.shield(drained)
        except TimeoutError:
            cancelled = sum(p.cancel_handlers() for p in self.processors)
            logger.warning(
                "shutdown deadline near: cancelled %d handler(s), abandoning their messages",
                cancelled,
            )
            try:
                async with asyncio.timeout_at(deadline - self._budget.close):
                    await asyncio.gather(*(p.wait_idle() for p in self.processors))
            except TimeoutError:
                logger.error("messages still being settled at exit; their locks will expire")
        finally:
            drained.cancel()

    async def _close(self) -> None:
        """Close every receiver and sender at once, giving up at the deadline.

        Closes get at least :data:`common.shutdown.MIN_CLOSE_TIME`: when less is left, the
        deadline moves (so a grace period under about a second may be overrun by up to that
        much).
        """
        try:
            async with asyncio.timeout_at(self._deadline.keep_close_time()):
                await asyncio.gather(*(p.close() for p in self.processors))
        except TimeoutError:
            logger.warning(
                "receivers and senders still closing at the shutdown deadline: left to end "
                "with the process"
            )


def _loop_time() -> float:
    """The running event loop's clock (``asyncio.timeout_at`` takes its times)."""
    return asyncio.get_running_loop().time()
