"""All queues of one process, and graceful shutdown.

Shutdown (SIGTERM, as Container Apps sends before it kills a replica,
https://learn.microsoft.com/azure/container-apps/application-lifecycle-management#shutdown):
readiness turns false, receiving stops after the receive call in progress, in-flight
handlers get until ``shutdown_grace_period`` (minus a settlement reserve) to finish and
settle; handlers still running are cancelled and their messages abandoned so Service Bus
hands them out again at once; then receivers and senders close.
"""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from consumer import telemetry
from consumer.runtime.processor import QueueConfig, QueueProcessor
from consumer.runtime.routing import Router
from consumer.runtime.stats import WorkerStats

logger = logging.getLogger(__name__)

SETTLE_RESERVE = 3.0
"""Seconds of the grace period kept for abandoning cancelled messages and closing."""


class Worker:
    """Processes several queues until stopped.

    Args:
        client: The process's long-lived ``ServiceBusClient``.
        queues: Per-queue settings.
        router: Picks the handler of each envelope.
        shutdown_grace_period: Seconds from stop to return.
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
        self.processors = [
            QueueProcessor(client, config, router, self.stats.queue(config.name))
            for config in queues
        ]
        self.running = False
        self.stopping = False

    @property
    def connected(self) -> bool:
        """True when every queue's receiver is attached and healthy."""
        return all(processor.connected for processor in self.processors)

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set, then shut down within the grace period."""
        loop = asyncio.get_running_loop()
        self.running = True
        receiving = [
            asyncio.create_task(p.receive_until(stop), name=f"receive:{p.config.name}")
            for p in self.processors
        ]
        try:
            await stop.wait()
            self.stopping = True
            deadline = loop.time() + self._grace
            logger.info("stopping: receiving ends, %.0f s grace for in-flight work", self._grace)

            async def drain() -> None:
                await asyncio.gather(*receiving)
                await asyncio.gather(*(p.wait_idle() for p in self.processors))

            drained = asyncio.create_task(drain())
            try:
                async with asyncio.timeout_at(deadline - SETTLE_RESERVE):
                    await asyncio.shield(drained)
            except TimeoutError:
                cancelled = sum(p.cancel_handlers() for p in self.processors)
                logger.warning("grace period over: cancelled %d handler(s)", cancelled)
                try:
                    async with asyncio.timeout_at(deadline):
                        await asyncio.gather(*(p.wait_idle() for p in self.processors))
                except TimeoutError:
                    logger.error("messages still being settled at exit; their locks will expire")
            drained.cancel()
        finally:
            for task in receiving:
                task.cancel()
            await asyncio.gather(*receiving, return_exceptions=True)
            for processor in self.processors:
                await processor.close()
            self.running = False
