"""Per-source receive loop for session-enabled entities: in order within a session.

A session (messages sharing a ``session_id``) is locked by one receiver at a time, and its
messages come in sequence order
(https://learn.microsoft.com/azure/service-bus-messaging/message-sessions). This loop runs
``max_concurrent_sessions`` lanes, each its own session receiver (and AMQP connection):

* a lane accepts the next available session (``NEXT_AVAILABLE_SESSION``), waiting up to
  ``max_wait_time`` for one;
* it receives one message at a time and runs it through the pipeline to its settlement
  before it receives the next, so a session's messages are handled one after the other,
  in order; different sessions run side by side on other lanes. A retry holds the
  message, and so the session, until due (:mod:`consumer.runtime.redelivery`): a
  re-sent copy would go behind the session's later messages;
* it renews the session lock (session messages have no lock of their own) on a timer at
  half the remaining lock time, through the receiver's lock (:class:`SessionLockRenewal`);
* it releases the session (closes the receiver) once the session has been idle for
  ``max_wait_time``, so that other sessions get a turn, and accepts the next.

Receiving one message at a time costs a receive round trip per message; it keeps the
link without credit while a message is processed (:mod:`consumer.runtime.credit`), and
nothing of the session is locked in the client ahead of its turn.
"""

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.exceptions import OperationTimeoutError

from consumer.runtime.channel import ReceiverChannel
from consumer.runtime.config import QueueConfig
from consumer.runtime.inflight import InFlight
from consumer.runtime.pipeline import MessagePipeline
from consumer.runtime.routing import Router
from consumer.runtime.stats import QueueStats

logger = logging.getLogger(__name__)

MIN_RECEIVE_WAIT = 0.05
"""Shortest receive wait (seconds) when the session lock leaves little time."""


@dataclass
class SessionLane:
    """One session receiver slot: the session it holds, its reconnect back-off.

    Attributes:
        channel: The receiver on the held session; ``None`` between sessions.
        failures: Accept failures in a row (not counting "no session available").
    """

    channel: ReceiverChannel | None = None
    failures: int = 0


class SessionLockRenewal:
    """Renews one held session's lock until stopped, at half its remaining time.

    A timer task per session rather than ``AutoLockRenewer``: the renewal goes through
    the receiver's lock, which serialises every call on the SDK receiver (it is not
    coroutine-safe, :mod:`consumer.runtime.channel`), as message lock renewal does
    (:mod:`consumer.runtime.lock`). A failed renewal marks the channel broken: the lane
    releases the session once its current message is settled.
    """

    def __init__(self, channel: ReceiverChannel, stats: QueueStats, queue: str) -> None:
        self.lost = False
        self._channel = channel
        self._stats = stats
        self._queue = queue
        self._task = asyncio.create_task(self._renew_forever(), name=f"session-lock:{queue}")

    async def _renew_forever(self) -> None:
        while True:
            until = self._channel.session_locked_until
            remaining = (until - datetime.now(UTC)).total_seconds() if until else 0.0
            await asyncio.sleep(max(remaining / 2, MIN_RECEIVE_WAIT))
            try:
                await self._channel.renew_session_lock()
            except Exception as exc:
                self.lost = True
                self._channel.broken = True
                self._stats.locks_lost += 1
                logger.warning(
                    "cannot renew the lock of session %s on %s: %r",
                    self._channel.session_id,
                    self._queue,
                    exc,
                )
                return
            self._stats.lock_renewals += 1

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class SessionProcessor(InFlight):
    """Receives from one session-enabled queue or subscription, in order per session.

    The same face as :class:`~consumer.runtime.processor.QueueProcessor` for the worker
    and the health endpoint.

    Args:
        client: The process's ``ServiceBusClient``.
        config: Source settings (``sessions`` set).
        router: Picks the handler for each envelope.
        stats: Counters to update.
    """

    def __init__(self, client: Any, config: QueueConfig, router: Router, stats: QueueStats):
        super().__init__(client, config, stats)  # its sender stays unused: retries are held
        self._lanes = [SessionLane() for _ in range(max(1, config.max_concurrent_sessions))]
        self._receiving_stopped = False
        self._pipeline = MessagePipeline(
            config,
            router,
            stats,
            self._sender,
            receiving_stopped=lambda: False,  # a lane only receives what it handles next
            on_handled=lambda _task: None,
        )

    @property
    def connected(self) -> bool:
        """True while no lane is failing to reach the entity."""
        return all(lane.failures == 0 for lane in self._lanes)

    @property
    def receiving(self) -> bool:
        return not self._receiving_stopped

    async def receive_until(self, stop: asyncio.Event) -> None:
        """Accept sessions and process them until ``stop`` is set; each lane finishes the
        message it has (settling it) and releases its session."""

        async def release_holds_at_stop() -> None:
            await stop.wait()
            self._pipeline.hold.release_all()  # lanes wait for their held messages

        watch = asyncio.create_task(release_holds_at_stop(), name=f"stop:{self.config.name}")
        try:
            await asyncio.gather(*(self._lane(lane, stop) for lane in self._lanes))
        finally:
            watch.cancel()
            self._receiving_stopped = True
            self._pipeline.hold.release_all()

    async def _lane(self, lane: SessionLane, stop: asyncio.Event) -> None:
        while not stop.is_set():
            channel = await self._accept(lane, stop)
            if channel is None:
                continue
            renewal = SessionLockRenewal(channel, self.stats, self.config.name)
            try:
                await self._process_session(channel, stop)
            finally:
                await renewal.stop()
                lane.channel = None
                await channel.close()  # releases the session for other receivers

    async def _accept(self, lane: SessionLane, stop: asyncio.Event) -> ReceiverChannel | None:
        """The next available session's receiver, or ``None`` (none came, or a failure)."""
        self._generation += 1
        channel = ReceiverChannel(
            self._client,
            self.config.name,
            prefetch_count=0,
            generation=self._generation,
            session_wait=self.config.max_wait_time,
        )
        try:
            await channel.open()
        except OperationTimeoutError:  # no session has messages: ask again
            await channel.close()
            lane.failures = 0
            return None
        except Exception as exc:
            await channel.close()
            what = f"cannot accept a session on {self.config.name}: {exc!r}"
            await self._open_failed(lane, stop, exc, what)
            return None
        self.missing = None
        lane.failures = 0
        lane.channel = channel
        logger.debug("session %s of %s accepted", channel.session_id, self.config.name)
        return channel

    async def _process_session(self, channel: ReceiverChannel, stop: asyncio.Event) -> None:
        """Messages of the held session, one at a time, until it is idle or lost."""
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        while not stop.is_set() and not channel.broken:
            try:
                messages = await channel.receive(1, self._receive_wait(channel))
            except OperationTimeoutError:
                messages = []
            except Exception as exc:
                logger.warning(
                    "receive from session %s of %s failed: %r",
                    channel.session_id,
                    self.config.name,
                    exc,
                )
                return
            if not messages:
                if loop.time() - idle_since >= self.config.max_wait_time:
                    return  # idle: let another lane (or replica) have it later
                continue
            for message in messages:
                await self._run(channel, message)
            idle_since = loop.time()

    def _receive_wait(self, channel: ReceiverChannel) -> float:
        """``max_wait_time``, but short enough for the session lock to be renewed in time
        (a renewal waits for the receive call to release the receiver)."""
        wait = self.config.max_wait_time
        until = channel.session_locked_until
        if until is not None:
            wait = min(wait, (until - datetime.now(UTC)).total_seconds() / 4)
        return max(wait, MIN_RECEIVE_WAIT)

    async def _run(self, channel: ReceiverChannel, message: ServiceBusReceivedMessage) -> None:
        """Process ``message`` in its own task and wait for its settlement.

        ``asyncio.wait`` rather than awaiting the task: cancelling the lane (the worker
        does at the end of shutdown) leaves the message's task to settle.
        """
        self.stats.received += 1
        self.stats.in_flight += 1
        name = f"process:{self.config.name}:{message.sequence_number}"
        task = asyncio.create_task(self._process(channel, message), name=name)
        self._tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self.stats.in_flight -= 1

        task.add_done_callback(finished)
        await asyncio.wait({task})

    async def _process(self, channel: ReceiverChannel, message: ServiceBusReceivedMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        await self._pipeline(message, channel, task)

    async def close(self) -> None:
        """Close the session receivers (releasing their sessions) and the sender."""
        channels = [lane.channel for lane in self._lanes if lane.channel is not None]
        for lane in self._lanes:
            lane.channel = None
        await asyncio.gather(*(channel.close() for channel in channels), self._sender.close())
