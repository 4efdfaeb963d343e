"""Per-source receive loop: receivers, their share of capacity, recycling, reconnects.

For a queue or a subscription without sessions; session-enabled sources have their own
loop (:mod:`consumer.runtime.sessions`).

Each receiver lane (:class:`ReceiverLane`) runs its own loop: it asks for at most its free
share of the queue's capacity and leaves its link without credit between calls
(:mod:`consumer.runtime.credit`), recreates its receiver when the link fails or stays
silent, and backs off between reconnects. Every message received runs through the
queue's :class:`~consumer.runtime.pipeline.MessagePipeline` in its own task; this module
only counts messages in and out, so that a receiver refills its share and a retired
receiver closes once its last message is settled.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage

from consumer.runtime.channel import ReceiverChannel
from consumer.runtime.config import SLOTS_PER_RECEIVER, QueueConfig, receivers_for
from consumer.runtime.credit import split_capacity
from consumer.runtime.inflight import InFlight
from consumer.runtime.pipeline import MessagePipeline
from consumer.runtime.routing import Router
from consumer.runtime.stats import QueueStats

__all__ = ["SLOTS_PER_RECEIVER", "QueueConfig", "QueueProcessor", "ReceiverLane", "receivers_for"]

logger = logging.getLogger(__name__)


@dataclass
class ReceiverLane:
    """One receiver of the queue: its share of the capacity, its own reconnect back-off.

    Attributes:
        share: Most of its messages whose handler has not finished (``unhandled``).
        batch: Free share it waits for before receiving again, once its link holds no
            credit (asking for one or two messages each time a slot frees costs a
            receive round trip per message, and settlements queue behind it).
        channel: Its receiver, ``None`` until opened (and while being recreated).
        failures: Receive or open failures in a row (the reconnect back-off's attempt).
        unhandled: Its messages whose handler has not finished.
        slot_freed: Set when one of its messages' handlers finishes.
    """

    share: int
    batch: int
    channel: ReceiverChannel | None = None
    failures: int = 0
    unhandled: int = 0
    slot_freed: asyncio.Event = field(default_factory=asyncio.Event)


class QueueProcessor(InFlight):
    """Receives from one queue or subscription and processes messages concurrently.

    Args:
        client: The process's ``ServiceBusClient``.
        config: Queue settings.
        router: Picks the handler for each envelope.
        stats: Counters to update.
    """

    def __init__(self, client: Any, config: QueueConfig, router: Router, stats: QueueStats):
        super().__init__(client, config, stats)
        self._retired: list[ReceiverChannel] = []
        self._in_flight_by_generation: dict[int, int] = {}
        # Messages received whose handler has not finished, with their receiver's lane;
        # only these count against receiving more. A handled message waiting for its
        # settlement does not: it waits behind its receiver's lock, so a receiver's next
        # receive call queues behind the settlements it caused, which bounds them.
        self._unhandled: dict[asyncio.Task[Any], ReceiverLane] = {}
        # Handlers running at once (the pipeline's HandlerSlot); up to ``lookahead`` more
        # messages wait in hand (locked, lock renewed) so a freed slot starts its next
        # message without a receive round trip. Each receiver has its own share of the
        # capacity, so that it never asks for more than it can take and never waits
        # holding link credit (credit.py).
        lookahead = max(1, min(config.max_message_count, config.concurrency // 4))
        receivers = max(1, config.receiver_count)
        self._lanes = [
            ReceiverLane(share=share, batch=max(1, min(share, lookahead // receivers)))
            for share in split_capacity(config.concurrency + lookahead, receivers)
        ]
        self._pipeline = MessagePipeline(
            config,
            router,
            stats,
            self._sender,
            receiving_stopped=lambda: self._receiving_stopped,
            on_handled=self._handled,
        )
        self._receiving_stopped = False

    @property
    def connected(self) -> bool:
        """True while every receiver is attached and its last call succeeded."""
        return all(
            lane.channel is not None and lane.channel.opened and not lane.channel.broken
            for lane in self._lanes
        )

    @property
    def receiving(self) -> bool:
        """False once every receiver has stopped receiving (after the stop)."""
        return not self._receiving_stopped

    # -- receiving ---------------------------------------------------------------------

    async def receive_until(self, stop: asyncio.Event) -> None:
        """Receive and dispatch until ``stop`` is set. In-flight work continues after.

        Receivers leave their links without credit when they stop
        (:mod:`consumer.runtime.credit`): messages sent from then on stay on the queue
        for other consumers instead of going to one that no longer reads them.
        """
        try:
            await asyncio.gather(*(self._receive(lane, stop) for lane in self._lanes))
        finally:
            self._receiving_stopped = True
            self._pipeline.hold.release_all()  # retries held until due: abandon them now

    async def _receive(self, lane: ReceiverLane, stop: asyncio.Event) -> None:
        """One receiver's loop: its link holds credit only while it is in a receive call.

        It asks for at most its free share. A call that gets fewer messages than it asked
        for takes the rest of its credit back (``ReceiverChannel.receive``). Should that
        be impossible (``holds_credit``), the loop calls again at once (its free share is
        then at least 1) rather than wait for capacity holding credit
        (:mod:`consumer.runtime.credit`).
        """
        config = self.config
        while not stop.is_set():
            channel = await self._current_channel(lane, stop)
            if channel is None:
                break
            free = lane.share - lane.unhandled
            if free < (1 if channel.holds_credit else lane.batch):
                lane.slot_freed.clear()
                await _wait_any(lane.slot_freed, stop)
                continue
            wanted = min(free, config.max_message_count)
            wait = config.busy_wait_time if self._tasks else config.max_wait_time
            try:
                messages = await channel.receive(wanted, wait)
            except Exception as exc:
                channel.broken = True
                await self._back_off(lane, stop, f"receive from {config.name} failed: {exc!r}")
                continue
            lane.failures = 0
            for message in messages:
                self._dispatch(lane, channel, message)

    async def _current_channel(
        self, lane: ReceiverLane, stop: asyncio.Event
    ) -> ReceiverChannel | None:
        channel = lane.channel
        if channel is not None and not channel.broken:
            idle = time.monotonic() - channel.last_message_at
            recycle = self.config.recycle_after_idle
            if not (recycle and idle > recycle and not self._in_flight_of(channel)):
                return channel
            logger.info("receiver on %s got nothing for %.0f s: recreating", self.config.name, idle)
        while not stop.is_set():
            if lane.channel is not None:
                self._retire(lane.channel)
                lane.channel = None
                self.stats.receiver_restarts += 1
            self._generation += 1
            fresh = ReceiverChannel(
                self._client,
                self.config.name,
                prefetch_count=self.config.prefetch_count,
                generation=self._generation,
            )
            try:
                await fresh.open()
            except Exception as exc:
                await fresh.close()
                what = f"cannot open receiver on {self.config.name}: {exc!r}"
                await self._open_failed(lane, stop, exc, what)
                continue
            self.missing = None
            lane.channel = fresh
            logger.info("receiving from %s", self.config.name)
            return fresh
        return None

    def _retire(self, channel: ReceiverChannel) -> None:
        if self._in_flight_of(channel):
            self._retired.append(channel)  # closed when its last message is settled
        else:
            self._spawn_close(channel)

    def _spawn_close(self, channel: ReceiverChannel) -> None:
        task = asyncio.create_task(channel.close(), name=f"close:{self.config.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _in_flight_of(self, channel: ReceiverChannel) -> int:
        return self._in_flight_by_generation.get(channel.generation, 0)

    # -- dispatch --------------------------------------------------------------------

    def _dispatch(
        self, lane: ReceiverLane, channel: ReceiverChannel, message: ServiceBusReceivedMessage
    ) -> None:
        self.stats.received += 1
        self.stats.in_flight += 1
        generation = channel.generation
        self._in_flight_by_generation[generation] = (
            self._in_flight_by_generation.get(generation, 0) + 1
        )
        task = asyncio.create_task(
            self._process(channel, message), name=f"process:{self.config.name}"
        )
        self._tasks.add(task)
        self._unhandled[task] = lane
        lane.unhandled += 1

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self._handled(done)
            self.stats.in_flight -= 1
            left = self._in_flight_by_generation[generation] - 1
            self._in_flight_by_generation[generation] = left
            if left == 0:
                del self._in_flight_by_generation[generation]
                for retired in [c for c in self._retired if c.generation == generation]:
                    self._retired.remove(retired)
                    self._spawn_close(retired)

        task.add_done_callback(finished)

    async def _process(self, channel: ReceiverChannel, message: ServiceBusReceivedMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        await self._pipeline(message, channel, task)

    def _handled(self, task: asyncio.Task[Any]) -> None:
        """The message's handler is done: its receiver may refill the slot."""
        lane = self._unhandled.pop(task, None)
        if lane is not None:
            lane.unhandled -= 1
            lane.slot_freed.set()

    # -- shutdown ----------------------------------------------------------------------

    async def close(self) -> None:
        """Close receivers and the sender, all at once.

        Each SDK close takes a round trip or more (docs/benchmarks/findings.md §14.14),
        so one after the other they outlast any grace period at 16 receivers a queue.
        Cancel this to give up on the ones still closing.
        """
        channels = [lane.channel for lane in self._lanes if lane.channel is not None]
        channels += self._retired
        for lane in self._lanes:
            lane.channel = None
        self._retired = []
        await asyncio.gather(*(channel.close() for channel in channels), self._sender.close())


async def _wait_any(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
