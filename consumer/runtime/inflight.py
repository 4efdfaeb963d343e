"""What the queue and session processors share: their in-flight message tasks, the
shutdown calls on them, and the reconnect back-off of a failing receiver."""

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from azure.servicebus.exceptions import MessagingEntityNotFoundError

from consumer.retry import exponential_backoff
from consumer.runtime.channel import SenderChannel
from consumer.runtime.config import QueueConfig
from consumer.runtime.entities import QueueEntity, describe_missing
from consumer.runtime.pipeline import MessagePipeline
from consumer.runtime.stats import QueueStats

logger = logging.getLogger(__name__)


class FailingLane(Protocol):
    """A receiver slot that counts its failures in a row."""

    failures: int


class InFlight:
    """Message tasks of one processor and the pipeline they run in.

    Args:
        client: The process's ``ServiceBusClient``.
        config: Source settings.
        stats: Counters to update.

    Subclasses call this ``__init__`` first, then build ``_pipeline`` (it needs their
    callbacks).
    """

    _pipeline: MessagePipeline

    def __init__(self, client: Any, config: QueueConfig, stats: QueueStats) -> None:
        self._client = client
        self.config = config
        self.stats = stats
        self._generation = 0
        self._sender = SenderChannel(client, config.name)
        self._tasks: set[asyncio.Task[None]] = set()
        self.missing: str | None = None
        """Set while opening a receiver (or accepting a session) fails because the entity
        does not exist: says which, its setting and how to create it (for ``/readyz``)."""

    @property
    def busy(self) -> bool:
        """True while a message is in flight."""
        return bool(self._tasks)

    async def wait_idle(self) -> None:
        """Return when no message is in flight."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def cancel_handlers(self) -> int:
        """Cancel running handlers and end retry holds (their messages are then
        abandoned); returns how many handlers."""
        self._pipeline.hold.release_all()
        return self._pipeline.deadline.cancel_all()

    async def _back_off(self, lane: FailingLane, stop: asyncio.Event, what: str) -> None:
        """Wait before the lane's next attempt (exponential, 0.5 s to 30 s, jittered),
        or until ``stop``."""
        lane.failures += 1
        delay = exponential_backoff(lane.failures, initial=0.5, maximum=30.0, jitter=0.5)
        logger.warning("%s; retrying in %.1f s", what, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

    async def _open_failed(
        self, lane: FailingLane, stop: asyncio.Event, exc: Exception, what: str
    ) -> None:
        """A receiver could not be opened: when the entity does not exist, say which and
        how to create it (``missing``, for ``/readyz``); then back off."""
        if isinstance(exc, MessagingEntityNotFoundError):
            self.missing = describe_missing(
                QueueEntity(self.config.name, self.config.setting),
                self._client.fully_qualified_namespace,
            )
            what = self.missing
        await self._back_off(lane, stop, what)
