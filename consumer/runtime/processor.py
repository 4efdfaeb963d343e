"""Per-queue processing: receive, run handlers concurrently, renew locks, retry, settle.

Settlement follows
https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement:
complete on success (and for a duplicate the handler skipped), dead-letter what can never
succeed, re-send transient failures as scheduled messages (``consumer.retry``), abandon
only on shutdown or as the redelivery fallback. A settlement that fails because the
message is already settled or its lock is gone is logged and counted, never fatal: the
message comes back and the handlers are idempotent on the event id.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    MessagingEntityNotFoundError,
    ServiceBusError,
)
from tenacity import wait_exponential_jitter

from consumer import telemetry
from consumer.errors import ConsumerDeadLetterReason, DeliverLater
from consumer.messages import DEAD_LETTER_PROPERTIES, copy_for_resend, text_properties
from consumer.retry import (
    RETRY_PROPERTIES,
    Abandon,
    DeadLetter,
    Decision,
    RetryState,
    Schedule,
    call_with_immediate_retries,
    decide,
    describe,
    fallback,
)
from consumer.runtime.channel import ReceiverChannel, SenderChannel
from consumer.runtime.credit import split_capacity
from consumer.runtime.entities import QueueEntity, describe_missing
from consumer.runtime.routing import Route, Router
from consumer.runtime.stats import QueueStats
from contracts import ContractViolation, DeadLetterReason, EventEnvelope
from contracts.servicebus import from_servicebus_message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueConfig:
    """How one queue is processed. Times are in seconds.

    Attributes:
        name: Queue name.
        concurrency: Messages processed at once.
        receivers: Receivers (each its own AMQP connection and link) reading the queue;
            ``None`` picks :func:`receivers_for` ``(concurrency)``. Every call on one
            receiver is serialised and a settlement waits for the service's answer, so
            one receiver settles one message per round trip; more receivers overlap
            those round trips. Each receiver takes its own share of the messages the
            queue may hold (:mod:`consumer.runtime.credit`).
        prefetch_count: SDK prefetch for each receiver (0 = off).
        max_message_count: Most messages asked for per receive call.
        max_wait_time: Receive wait while nothing is in flight (bounds shutdown latency).
        busy_wait_time: Receive wait while handlers run; settlements and lock renewals
            on the same receiver wait at most about this long.
        max_delivery_count: The queue's MaxDeliveryCount (must match the entity).
        max_processing_time: Longest a message is worked on, lock renewal included;
            the handler is then cancelled and the failure treated as transient.
        recycle_after_idle: Recreate a receiver that got nothing for this long (Service
            Bus detaches links idle for 10 minutes; a stale link can receive nothing
            without raising). 0 disables.
        event_types: Event types this queue carries; others are dead-lettered with
            ``WrongQueue``. ``None`` accepts any.
        setting: The environment variable naming the queue (e.g. ``CONSUMER_AUDIT_QUEUE``),
            for messages saying the queue does not exist.
    """

    name: str
    concurrency: int = 8
    receivers: int | None = None
    prefetch_count: int = 0
    max_message_count: int = 50
    max_wait_time: float = 2.0
    busy_wait_time: float = 0.2
    max_delivery_count: int = 10
    max_processing_time: float = 300.0
    recycle_after_idle: float = 300.0
    event_types: frozenset[str] | None = None
    setting: str | None = None

    @property
    def receiver_count(self) -> int:
        """``receivers``, or the default for ``concurrency`` when it is ``None``."""
        return receivers_for(self.concurrency) if self.receivers is None else self.receivers


SLOTS_PER_RECEIVER = 16
"""Handler slots one receiver keeps fed by default (see :func:`receivers_for`)."""


def receivers_for(concurrency: int) -> int:
    """Default receivers for a queue processed ``concurrency`` messages at a time.

    One per 16 handler slots, at least 2 and at most 8. Since azure-servicebus 7.15 every
    peek-lock settlement waits for the service's outcome (one round trip each), and the
    SDK's pure-Python transport reads and writes a connection under one lock, so
    settlements on one receiver do not overlap even when awaited together: a receiver
    settles at most one message per round trip, and at high concurrency its receive calls
    queue behind those settlements, leaving handler slots empty. Receivers on separate
    connections overlap them (docs/benchmarks/findings.md, section 11).
    """
    return max(2, min(8, concurrency // SLOTS_PER_RECEIVER))


@dataclass
class _Lane:
    """One receiver of the queue: its share of the capacity, its own reconnect back-off.

    Attributes:
        share: Most of its messages whose handler has not finished (``unhandled``).
        batch: Free share it waits for before receiving again, once its link holds no
            credit (asking for one or two messages each time a slot frees costs a
            receive round trip per message, and settlements queue behind it).
        unhandled: Its messages whose handler has not finished.
    """

    share: int
    batch: int
    channel: ReceiverChannel | None = None
    failures: int = 0
    unhandled: int = 0
    slot_freed: asyncio.Event = field(default_factory=asyncio.Event)


class _LockKeeper:
    """Renews one message's lock, and ends its processing time at ``deadline``.

    One timer per message does both: it fires at half the lock's remaining time to renew
    it, or at ``deadline`` (loop time) if that comes first. At the deadline renewing stops
    and ``on_deadline`` is called (it cancels the handler, if one is running). A timer
    rather than a task: most messages are settled long before either is due, so they
    cost one timer handle; a task runs only for a due renewal. The same timer serves
    as the handler's timeout, instead of an ``asyncio.timeout_at`` per message.
    """

    def __init__(
        self,
        channel: ReceiverChannel,
        message: ServiceBusReceivedMessage,
        deadline: float,
        stats: QueueStats,
        queue: str,
        on_deadline: Callable[[], None],
    ) -> None:
        self.lost = False
        self.expired = False
        """The deadline has passed (``on_deadline`` was called)."""
        self._channel = channel
        self._message = message
        self._deadline = deadline
        self._on_deadline = on_deadline
        self._stats = stats
        self._queue = queue
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._stopped = False
        self._schedule()

    def _schedule(self) -> None:
        locked_until = self._message.locked_until_utc
        loop = self._loop
        if locked_until is not None:
            remaining = (locked_until - datetime.now(UTC)).total_seconds()
            due = loop.time() + max(remaining / 2, 0.0)
            if due < self._deadline:
                self._timer = loop.call_at(due, self._due)
                return
        self._timer = loop.call_at(self._deadline, self._expire)

    def _due(self) -> None:
        self._timer = None
        if not self._stopped:
            self._renewing = asyncio.create_task(self._renew())

    def _expire(self) -> None:
        self._timer = None
        if not self._stopped:
            self.expired = True  # maximum processing time: stop renewing
            self._on_deadline()

    async def _renew(self) -> None:
        try:
            await self._channel.renew_lock(self._message)
        except Exception as exc:
            self.lost = True
            self._stats.locks_lost += 1
            logger.warning(
                "cannot renew the lock of message %s on %s: %r",
                self._message.message_id,
                self._queue,
                exc,
            )
            return
        self._stats.lock_renewals += 1
        if not self._stopped:
            self._schedule()

    async def stop(self) -> None:
        """No more renewals; waits for one in progress (it uses the receiver)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._renewing is not None:
            await self._renewing


class _HandlerCancelled(Exception):
    """``cancel_handlers`` stopped the handler (shutdown): abandon the message."""


@dataclass(frozen=True)
class _Complete:
    duplicate: bool


_Outcome = _Complete | Decision | None  # None: lock lost, leave the message alone


class QueueProcessor:
    """Receives from one queue and processes messages concurrently.

    Args:
        client: The process's ``ServiceBusClient``.
        config: Queue settings.
        router: Picks the handler for each envelope.
        stats: Counters to update.
    """

    def __init__(self, client: Any, config: QueueConfig, router: Router, stats: QueueStats):
        self._client = client
        self.config = config
        self._router = router
        self.stats = stats
        self._retired: list[ReceiverChannel] = []
        self._generation = 0
        self._sender = SenderChannel(client, config.name)
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight_by_generation: dict[int, int] = {}
        # Messages received whose handler has not finished, with their receiver's lane;
        # only these count against receiving more. A handled message waiting for its
        # settlement does not: it waits behind its receiver's lock, so a receiver's next
        # receive call queues behind the settlements it caused, which bounds them.
        self._unhandled: dict[asyncio.Task[None], _Lane] = {}
        # Handlers running at once; up to ``lookahead`` more messages wait in hand (locked,
        # lock renewed) so a freed slot starts its next message without a receive round
        # trip. Each receiver has its own share of the capacity, so that it never asks for
        # more than it can take and never waits holding link credit (credit.py).
        self._handler_slots = asyncio.Semaphore(config.concurrency)
        lookahead = max(1, min(config.max_message_count, config.concurrency // 4))
        receivers = max(1, config.receiver_count)
        self._lanes = [
            _Lane(share=share, batch=max(1, min(share, lookahead // receivers)))
            for share in split_capacity(config.concurrency + lookahead, receivers)
        ]
        # Tasks running a handler, for ``cancel_handlers``; those it cancelled; those the
        # maximum processing time cancelled.
        self._in_handler: set[asyncio.Task[Any]] = set()
        self._handler_cancels: set[asyncio.Task[Any]] = set()
        self._deadline_cancels: set[asyncio.Task[Any]] = set()
        self._receiving_stopped = False
        self.missing: str | None = None
        """Set while opening a receiver fails because the queue does not exist: says
        which queue, its setting and how to create it (for ``/readyz``)."""

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

    async def _receive(self, lane: _Lane, stop: asyncio.Event) -> None:
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

    async def _current_channel(self, lane: _Lane, stop: asyncio.Event) -> ReceiverChannel | None:
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
                if isinstance(exc, MessagingEntityNotFoundError):
                    self.missing = describe_missing(
                        QueueEntity(self.config.name, self.config.setting),
                        self._client.fully_qualified_namespace,
                    )
                    what = self.missing
                await self._back_off(lane, stop, what)
                continue
            self.missing = None
            lane.channel = fresh
            logger.info("receiving from %s", self.config.name)
            return fresh
        return None

    async def _back_off(self, lane: _Lane, stop: asyncio.Event, what: str) -> None:
        lane.failures += 1
        delay = _reconnect_wait(lane.failures)
        logger.warning("%s; retrying in %.1f s", what, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

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

    # -- processing --------------------------------------------------------------------

    def _dispatch(
        self, lane: _Lane, channel: ReceiverChannel, message: ServiceBusReceivedMessage
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
        started = time.monotonic()
        with telemetry.process_span(self.config.name, message) as span:
            task = asyncio.current_task()
            assert task is not None
            deadline = asyncio.get_running_loop().time() + self.config.max_processing_time
            lock = _LockKeeper(
                channel,
                message,
                deadline,
                self.stats,
                self.config.name,
                partial(self._cancel_at_deadline, task),
            )
            try:
                outcome = await self._run_handler(message, deadline, lock)
            except Exception as exc:  # a bug in the runtime itself: never lose the worker
                logger.exception("processing message %s failed unexpectedly", message.message_id)
                outcome = Abandon(describe(exc))
            finally:
                self._handled(task)
                await lock.stop()
            if lock.lost or outcome is None:
                logger.warning(
                    "lock lost on message %s (%s); it will be redelivered",
                    message.message_id,
                    self.config.name,
                )
                telemetry.record_processed(span, self.config.name, "lock_lost", started)
                return
            label, reason = await self._settle(channel, message, outcome)
            telemetry.record_processed(span, self.config.name, label, started, reason)

    def _handled(self, task: asyncio.Task[Any]) -> None:
        """The message's handler is done: its receiver may refill the slot."""
        lane = self._unhandled.pop(task, None)
        if lane is not None:
            lane.unhandled -= 1
            lane.slot_freed.set()

    async def _run_handler(
        self, message: ServiceBusReceivedMessage, deadline: float, lock: _LockKeeper
    ) -> _Outcome:
        async with self._handler_slots:
            if self._receiving_stopped:  # a look-ahead message, not started
                return Abandon("shutting down before the handler started")
            return await self._handle(message, deadline, lock)

    async def _handle(
        self, message: ServiceBusReceivedMessage, deadline: float, lock: _LockKeeper
    ) -> _Outcome:
        try:
            envelope = from_servicebus_message(message)
        except ContractViolation as exc:
            return DeadLetter(str(exc.reason), exc.description)
        accepted = self.config.event_types
        if accepted is not None and envelope.type not in accepted:
            return DeadLetter(
                DeadLetterReason.WRONG_QUEUE.value,
                f"{envelope.type} does not belong on queue {self.config.name}",
            )
        route = self._router(envelope)
        if route is None:
            return DeadLetter(
                ConsumerDeadLetterReason.UNHANDLED_EVENT_TYPE.value,
                f"no handler for {envelope.type} in this consumer",
            )
        try:
            result = await self._call_handler(route, envelope, deadline, lock)
        except _HandlerCancelled:
            return Abandon("shutting down before the handler finished")
        except DeliverLater as later:
            return Schedule(
                later.at,
                f"{envelope.id}:deliver-at:{int(later.at.timestamp())}",
                {},
            )
        except Exception as error:
            if lock.lost:
                return None
            return self._decide(message, envelope, route, error)
        if result is not False:
            telemetry.record_end_to_end(self.config.name, envelope.type, envelope.time)
        return _Complete(duplicate=result is False)

    async def _call_handler(
        self, route: Route, envelope: EventEnvelope, deadline: float, lock: _LockKeeper
    ) -> bool | None:
        """Run the handler with its in-process retries, within ``deadline``.

        Awaited in the message's own task rather than a task of its own (a task per
        message costs measurable CPU at thousands of messages a second):
        ``cancel_handlers`` and the message's deadline timer (``_LockKeeper``) cancel
        the message's task while it is in here.

        Raises:
            TimeoutError: ``deadline`` (loop time) passed, before or during the handler.
            _HandlerCancelled: ``cancel_handlers`` stopped it.
            Exception: what the handler raised, after its immediate retries.
        """

        def retried(error: BaseException) -> None:
            self.stats.immediate_retries += 1
            logger.info("retrying %s (%s) in process: %s", envelope.id, route.name, describe(error))

        task = asyncio.current_task()
        assert task is not None
        if lock.expired:  # the deadline passed while the message waited for a slot
            raise TimeoutError("maximum processing time reached before the handler started")
        self._in_handler.add(task)
        try:
            return await call_with_immediate_retries(
                partial(route.handler, envelope),
                route.policy,
                budget=max(0.0, deadline - asyncio.get_running_loop().time()),
                on_retry=retried,
                keep_going=lambda: not lock.lost,
            )
        except asyncio.CancelledError:
            ours = (task in self._handler_cancels) + (task in self._deadline_cancels)
            if ours and task.cancelling() == ours:  # cancelled by us alone
                if task in self._handler_cancels:
                    raise _HandlerCancelled from None
                raise TimeoutError("maximum processing time reached") from None
            raise
        finally:
            self._in_handler.discard(task)
            # Withdraw our cancellation requests (also when the handler swallowed one),
            # so that only other cancellations of the task remain.
            for cancels in (self._handler_cancels, self._deadline_cancels):
                if task in cancels:
                    cancels.discard(task)
                    task.uncancel()

    def _cancel_at_deadline(self, task: asyncio.Task[Any]) -> None:
        """The message's maximum processing time is over: cancel its handler, if running.

        Its ``_call_handler`` turns the cancellation into ``TimeoutError``, a transient
        failure, as ``asyncio.timeout`` would.
        """
        if task in self._in_handler and task not in self._deadline_cancels:
            self._deadline_cancels.add(task)
            task.cancel()

    def _decide(
        self,
        message: ServiceBusReceivedMessage,
        envelope: EventEnvelope,
        route: Route,
        error: Exception,
    ) -> Decision:
        state = RetryState.from_properties(text_properties(message), message.message_id)
        logger.warning(
            "%s failed on %s (event %s, attempt %d, delivery %s): %s",
            route.name,
            self.config.name,
            envelope.id,
            state.attempt,
            message.delivery_count,
            describe(error),
        )
        return decide(
            error,
            policy=route.policy,
            state=state,
            event_id=envelope.id,
            delivery_count=message.delivery_count or 0,
            max_delivery_count=self.config.max_delivery_count,
        )

    # -- settlement --------------------------------------------------------------------

    async def _settle(
        self,
        channel: ReceiverChannel,
        message: ServiceBusReceivedMessage,
        outcome: _Complete | Decision,
    ) -> tuple[str, str | None]:
        """Settle as decided; returns the outcome label and dead-letter reason for telemetry."""
        label = "retry_scheduled" if isinstance(outcome, Schedule) else ""
        if isinstance(outcome, Schedule):
            outcome = await self._reschedule(message, outcome)
        stats = self.stats
        if isinstance(outcome, _Complete):
            if await self._call(channel.complete(message), message):
                stats.completed += 1
                stats.duplicates += outcome.duplicate
            return label or "complete", None
        if isinstance(outcome, DeadLetter):
            logger.warning(
                "dead-lettering message %s on %s: %s: %s",
                message.message_id,
                self.config.name,
                outcome.reason,
                outcome.description,
            )
            settled = channel.dead_letter(message, outcome.reason, outcome.description[:1024])
            if await self._call(settled, message):
                stats.dead_lettered[outcome.reason] += 1
            return "dead_letter", outcome.reason
        if isinstance(outcome, Abandon):
            logger.info(
                "abandoning message %s on %s: %s", message.message_id, self.config.name, outcome.why
            )
            if await self._call(channel.abandon(message), message):
                stats.abandoned += 1
            return "abandon", None
        return label, None  # a re-send cannot decide to re-send again

    async def _reschedule(
        self, message: ServiceBusReceivedMessage, schedule: Schedule
    ) -> _Complete | Decision:
        """Send the re-send; then the original is completed. On failure: fallback."""
        copy = _copy_message(message, schedule.message_id, schedule.properties)
        try:
            sequence_number = await self._sender.schedule(copy, schedule.at)
        except Exception as exc:
            logger.warning("cannot schedule %s: %r", schedule.message_id, exc)
            return fallback(
                DeadLetter(
                    DeadLetterReason.MAX_RETRIES_EXCEEDED.value,
                    f"could not schedule a retry: {describe(exc)}"[:1024],
                ),
                message.delivery_count or 0,
                self.config.max_delivery_count,
            )
        self.stats.retries_scheduled += 1
        logger.info(
            "scheduled %s on %s for %s (sequence number %d)",
            schedule.message_id,
            self.config.name,
            schedule.at.isoformat(),
            sequence_number,
        )
        return _Complete(duplicate=False)

    async def _call(self, settlement: Any, message: ServiceBusReceivedMessage) -> bool:
        """Await a settlement; True when it succeeded. Failures are counted, not raised."""
        try:
            await settlement
        except MessageAlreadySettled:
            logger.info("message %s was already settled", message.message_id)
        except MessageLockLostError:
            self.stats.locks_lost += 1
            logger.warning("lock lost on message %s before settling", message.message_id)
        except (ServiceBusError, ValueError, RuntimeError) as exc:
            self.stats.settlement_failures += 1
            logger.warning("settling message %s failed: %r", message.message_id, exc)
        else:
            return True
        return False

    # -- shutdown ----------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    async def wait_idle(self) -> None:
        """Return when no message is in flight."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def cancel_handlers(self) -> int:
        """Cancel running handlers (their messages are then abandoned); returns how many."""
        running = list(self._in_handler)
        for task in running:
            self._handler_cancels.add(task)
            task.cancel()
        return len(running)

    async def close(self) -> None:
        """Close receivers and the sender, all at once.

        Each SDK close takes a round trip or more (0.5-1 s measured on a busy machine),
        so one after the other they outlast any grace period at 16 receivers a queue.
        Cancel this to give up on the ones still closing.
        """
        channels = [lane.channel for lane in self._lanes if lane.channel is not None]
        channels += self._retired
        for lane in self._lanes:
            lane.channel = None
        self._retired = []
        await asyncio.gather(*(channel.close() for channel in channels), self._sender.close())


_RECONNECT_WAIT = wait_exponential_jitter(multiplier=0.5, max=30.0, jitter=0.5)


def _reconnect_wait(attempt: int) -> float:
    from tenacity import AsyncRetrying, RetryCallState

    state = RetryCallState(retry_object=AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return float(_RECONNECT_WAIT(state))


async def _wait_any(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _copy_message(
    message: ServiceBusReceivedMessage, message_id: str, properties: Mapping[str, Any]
) -> ServiceBusMessage:
    """A new message with the original's body and properties, a new id and ``properties``."""
    if message.body_type == AmqpMessageBodyType.DATA:
        body: bytes | str = b"".join(message.body)
    else:
        body = str(message.body)
    return copy_for_resend(
        message,
        message_id=message_id,
        body=body,
        drop=(*RETRY_PROPERTIES, *DEAD_LETTER_PROPERTIES),
        add=properties,
    )
