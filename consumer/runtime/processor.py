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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
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
from consumer.runtime.routing import Router
from consumer.runtime.stats import QueueStats
from contracts import ContractViolation, DeadLetterReason
from contracts.servicebus import from_servicebus_message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueConfig:
    """How one queue is processed. Times are in seconds.

    Attributes:
        name: Queue name.
        concurrency: Messages processed at once.
        prefetch_count: SDK prefetch for the queue's receiver (0 = off).
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
    """

    name: str
    concurrency: int = 8
    prefetch_count: int = 0
    max_message_count: int = 50
    max_wait_time: float = 2.0
    busy_wait_time: float = 0.2
    max_delivery_count: int = 10
    max_processing_time: float = 300.0
    recycle_after_idle: float = 300.0
    event_types: frozenset[str] | None = None


@dataclass
class _LockState:
    lost: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


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
        self._channel: ReceiverChannel | None = None
        self._retired: list[ReceiverChannel] = []
        self._generation = 0
        self._sender = SenderChannel(client, config.name)
        self._tasks: set[asyncio.Task[None]] = set()
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        self._in_flight_by_generation: dict[int, int] = {}
        self._slot_freed = asyncio.Event()
        # Handlers running at once; up to ``_lookahead`` more messages wait in hand (locked,
        # lock renewed) so a freed slot starts its next message without a receive round
        # trip, and a message's settlement no longer occupies a handler slot.
        self._handler_slots = asyncio.Semaphore(config.concurrency)
        self._lookahead = max(1, min(config.max_message_count, config.concurrency // 4))
        self._receiving_stopped = False
        self._failures = 0

    @property
    def connected(self) -> bool:
        """True while the receiver is attached and its last call succeeded."""
        channel = self._channel
        return channel is not None and channel.opened and not channel.broken

    # -- receiving ---------------------------------------------------------------------

    async def receive_until(self, stop: asyncio.Event) -> None:
        """Receive and dispatch until ``stop`` is set. In-flight work continues after."""
        config = self.config
        while not stop.is_set():
            channel = await self._current_channel(stop)
            if channel is None:
                break
            free = config.concurrency + self._lookahead - len(self._tasks)
            # Refill in batches: asking for one or two messages each time a slot frees
            # costs a receive round trip per message on the one serialised receiver, and
            # settlements queue behind it. While others are in flight, wait until a
            # quarter of the slots (at most one receive batch) are free.
            if free < self._lookahead:
                self._slot_freed.clear()
                await _wait_any(self._slot_freed, stop)
                continue
            wait = config.busy_wait_time if self._tasks else config.max_wait_time
            try:
                messages = await channel.receive(min(free, config.max_message_count), wait)
            except Exception as exc:
                channel.broken = True
                await self._back_off(stop, f"receive from {config.name} failed: {exc!r}")
                continue
            self._failures = 0
            for message in messages:
                self._dispatch(channel, message)
        self._receiving_stopped = True

    async def _current_channel(self, stop: asyncio.Event) -> ReceiverChannel | None:
        channel = self._channel
        if channel is not None and not channel.broken:
            idle = time.monotonic() - channel.last_message_at
            recycle = self.config.recycle_after_idle
            if not (recycle and idle > recycle and not self._in_flight_of(channel)):
                return channel
            logger.info("receiver on %s got nothing for %.0f s: recreating", self.config.name, idle)
        while not stop.is_set():
            if self._channel is not None:
                self._retire(self._channel)
                self._channel = None
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
                await self._back_off(stop, f"cannot open receiver on {self.config.name}: {exc!r}")
                continue
            self._channel = fresh
            logger.info("receiving from %s", self.config.name)
            return fresh
        return None

    async def _back_off(self, stop: asyncio.Event, what: str) -> None:
        self._failures += 1
        delay = _reconnect_wait(self._failures)
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

    def _dispatch(self, channel: ReceiverChannel, message: ServiceBusReceivedMessage) -> None:
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

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self.stats.in_flight -= 1
            left = self._in_flight_by_generation[generation] - 1
            self._in_flight_by_generation[generation] = left
            if left == 0:
                del self._in_flight_by_generation[generation]
                for retired in [c for c in self._retired if c.generation == generation]:
                    self._retired.remove(retired)
                    self._spawn_close(retired)
            self._slot_freed.set()

        task.add_done_callback(finished)

    async def _process(self, channel: ReceiverChannel, message: ServiceBusReceivedMessage) -> None:
        started = time.monotonic()
        with telemetry.process_span(self.config.name, message) as span:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.config.max_processing_time
            lock = _LockState()
            renewal = asyncio.create_task(self._keep_lock(channel, message, deadline, lock))
            try:
                async with self._handler_slots:
                    if self._receiving_stopped:  # a look-ahead message, not started
                        outcome: _Outcome = Abandon("shutting down before the handler started")
                    else:
                        outcome = await self._handle(message, deadline, lock)
            except Exception as exc:  # a bug in the runtime itself: never lose the worker
                logger.exception("processing message %s failed unexpectedly", message.message_id)
                outcome = Abandon(describe(exc))
            finally:
                lock.done.set()
                await renewal
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

    async def _handle(
        self, message: ServiceBusReceivedMessage, deadline: float, lock: _LockState
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
        state = RetryState.from_properties(text_properties(message), message.message_id)
        loop = asyncio.get_running_loop()

        def retried(error: BaseException) -> None:
            self.stats.immediate_retries += 1
            logger.info("retrying %s (%s) in process: %s", envelope.id, route.name, describe(error))

        async def attempt() -> bool | None:
            return await route.handler(envelope)

        async def run() -> bool | None:
            async with asyncio.timeout_at(deadline):
                return await call_with_immediate_retries(
                    attempt,
                    route.policy,
                    budget=max(0.0, deadline - loop.time()),
                    on_retry=retried,
                    keep_going=lambda: not lock.lost,
                )

        task = asyncio.create_task(run(), name=f"handler:{route.name}")
        self._handler_tasks.add(task)
        try:
            result = await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
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
        finally:
            self._handler_tasks.discard(task)
        if result is not False:
            telemetry.record_end_to_end(self.config.name, envelope.type, envelope.time)
        return _Complete(duplicate=result is False)

    async def _keep_lock(
        self,
        channel: ReceiverChannel,
        message: ServiceBusReceivedMessage,
        deadline: float,
        lock: _LockState,
    ) -> None:
        """Renew the lock at half its remaining time until done or ``deadline``."""
        loop = asyncio.get_running_loop()
        while not lock.done.is_set():
            locked_until = message.locked_until_utc
            if locked_until is None:
                return
            remaining = (locked_until - datetime.now(UTC)).total_seconds()
            wait = max(remaining / 2, 0.0)
            if loop.time() + wait >= deadline:
                return  # maximum processing time: stop renewing
            try:
                await asyncio.wait_for(lock.done.wait(), wait)
                return
            except TimeoutError:
                pass
            try:
                await channel.renew_lock(message)
            except Exception as exc:
                lock.lost = True
                self.stats.locks_lost += 1
                logger.warning(
                    "cannot renew the lock of message %s on %s: %r",
                    message.message_id,
                    self.config.name,
                    exc,
                )
                return
            self.stats.lock_renewals += 1

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
        handlers = [task for task in self._handler_tasks if not task.done()]
        for task in handlers:
            task.cancel()
        return len(handlers)

    async def close(self) -> None:
        """Close receivers and the sender."""
        channels = [c for c in (self._channel, *self._retired) if c is not None]
        self._channel, self._retired = None, []
        for channel in channels:
            await channel.close()
        await self._sender.close()


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
