"""Moving outbox rows to Service Bus.

Two paths publish rows; both claim before sending, so a row is sent by one process at a
time:

* the **fast path** (:meth:`Relay.publish_claim`): right after an event is committed (after
  the HTTP response, as a background task) the process that accepted it publishes the rows
  it inserted already leased to itself;
* the **relay loop** (:meth:`Relay.run`): started in the lifespan, it claims whatever is
  still ``accepted`` and not leased -- rows of a crashed replica whose lease ran out, rows
  whose fast path failed or was skipped while Service Bus was unreachable -- in batches of
  ``batch_size``. After a failed cycle it backs off exponentially with jitter (tenacity);
  one success resets the backoff.

Notifications with a future ``deliver_at`` are scheduled (``schedule_messages``, which
returns their sequence numbers); everything else is sent in ``ServiceBusMessageBatch``
sends. ``send_messages`` does not return sequence numbers, so published rows have none.
"""

import asyncio
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.servicebus import ServiceBusMessage
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_not_exception_type,
    wait_exponential_jitter,
)

from contracts import ContractViolation, MessageTooLarge
from contracts._types import utc_now
from contracts.servicebus import (
    EVENT_TYPE_PROPERTY,
    SCHEMA_VERSION_PROPERTY,
    STRUCTURED_CONTENT_TYPE,
)
from producer import telemetry
from producer.outbox.marks import PublishedMarks
from producer.outbox.records import ClaimedEvent, NewEvent
from producer.outbox.repository import OutboxRepository
from producer.transport import ServiceBusTransport

logger = logging.getLogger(__name__)


SCHEDULE_THRESHOLD = timedelta(seconds=1)
"""A ``deliver_at`` less than this far ahead is sent at once instead of scheduled."""


@dataclass
class PublishStats:
    """Process-local counters since start-up.

    Attributes:
        accepted: Events committed to the outbox by this process.
        published: Events this process sent to Service Bus.
        scheduled: Events this process scheduled on Service Bus.
        cancelled: Notifications cancelled through this process.
        publish_failed: Events in send/schedule attempts that failed (each retry counts).
        unpublishable: Events that can never be sent (too large, unreadable); ``failed``.
        idempotent_replays: Requests answered from an earlier ``Idempotency-Key``.
        commit_groups: Outbox transactions that committed the events of concurrent
            requests together (group commit; requests without an ``Idempotency-Key`` or
            a caller's session).
        grouped_events: Events committed by those transactions. ``grouped_events /
            commit_groups`` is the mean group size: each transaction, and the send and
            update that follow it, is a fixed cost shared by that many events.
    """

    accepted: int = 0
    published: int = 0
    scheduled: int = 0
    cancelled: int = 0
    publish_failed: int = 0
    unpublishable: int = 0
    idempotent_replays: int = 0
    commit_groups: int = 0
    grouped_events: int = 0


def _stored_message(event: ClaimedEvent) -> ServiceBusMessage:
    """The message of a stored row, without validating the envelope again.

    The body was validated and size-checked when it was accepted, and is sent unchanged;
    only the attributes the message carries outside the body are read back. (A message
    larger than the entity allows is still caught by the batch, as ``too_large``.)

    Raises:
        ValueError: the body is not JSON (``json.JSONDecodeError``).
        KeyError: an attribute is missing.
    """
    document = json.loads(event.body)
    if not isinstance(document, dict):
        raise ValueError(f"the stored body is JSON {type(document).__name__}, not an object")
    return ServiceBusMessage(
        event.body,
        message_id=document["id"],
        subject=document["type"],
        content_type=STRUCTURED_CONTENT_TYPE,
        correlation_id=document.get("correlationid"),
        # Sent at once only when due within SCHEDULE_THRESHOLD: still not visible early.
        scheduled_enqueue_time_utc=event.deliver_at,
        application_properties={
            EVENT_TYPE_PROPERTY: document["type"],
            SCHEMA_VERSION_PROPERTY: document["schemaversion"],
        },
    )


class _Stopping(Exception):
    """The relay was asked to stop; not retried."""


class Relay:
    """Publishes claimed outbox rows; runs the relay loop.

    Args:
        repository: The outbox.
        transport: Service Bus senders.
        instance_id: This process's name; claim tokens are ``<instance_id>/<random>``.
        batch_size: Most rows claimed per relay cycle.
        poll_interval: Seconds an idle relay waits for :meth:`notify` before looking anyway.
        backoff_initial: Seconds before the first retry of a failed cycle.
        backoff_max: Upper bound of the backoff in seconds.
        max_message_bytes: Largest message the queues accept (bytes).
        stats: Counters to update.
        clock: Returns the current aware UTC time.
    """

    def __init__(
        self,
        repository: OutboxRepository,
        transport: ServiceBusTransport,
        *,
        instance_id: str,
        batch_size: int,
        poll_interval: float,
        backoff_initial: float,
        backoff_max: float,
        max_message_bytes: int,
        stats: PublishStats,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._repository = repository
        self.marks = PublishedMarks(repository, clock)
        """Where sent rows are recorded (a group commit takes waiting marks along)."""
        self._transport = transport
        self._instance_id = instance_id
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wait = wait_exponential_jitter(
            multiplier=backoff_initial, max=backoff_max, jitter=backoff_initial
        )
        self._max_message_bytes = max_message_bytes
        self._stats = stats
        self._clock = clock
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def new_claim(self) -> str:
        """A fresh claim token of this process."""
        return f"{self._instance_id}/{uuid.uuid4().hex[:16]}"

    def notify(self) -> None:
        """Wake the relay loop now (rows were released or inserted without a fast path)."""
        self._wake.set()

    def request_stop(self) -> None:
        """Make :meth:`run` return after its current cycle (no new claims, no more waits)."""
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`request_stop` was called."""
        return self._stopping.is_set()

    async def publish_claim(self, claim: str) -> None:
        """Fast path: publish the committed rows inserted with the claim token ``claim``.

        Never raises (it runs as a background task): on failure the rows are released for
        the relay loop, which retries with backoff.
        """
        try:
            events = await self._repository.claim_own(claim, now=self._clock())
            if events:
                await self._publish(claim, events)
        except Exception as exc:
            logger.info("fast-path publish failed (%r); the relay will retry", exc)
            self.notify()

    async def publish_inserted(
        self, claim: str, rows: list[NewEvent], messages: dict[str, ServiceBusMessage]
    ) -> None:
        """Publish rows this process has just committed, leased to ``claim`` by the insert.

        No claim query is needed: the insert leased them for ``lease`` from now, and their
        messages were already built (``messages``, by event id). Never raises: on failure
        the rows are released for the relay loop.
        """
        events = [ClaimedEvent.of(r) for r in rows]
        try:
            await self._publish(claim, events, messages)
        except Exception as exc:
            logger.info("fast-path publish failed (%r); the relay will retry", exc)
            self.notify()

    async def run(self, loops: int = 4) -> None:
        """Relay loop; returns once :meth:`request_stop` was called.

        ``loops`` cycles run concurrently, so some claim and record rows in the database
        while the batches of others are being encoded or are on the wire (claims never
        overlap: leases, and SKIP LOCKED on PostgreSQL). Four rather than two: four loops
        drained a backlog faster than two on both SQLite and PostgreSQL
        (docs/benchmarks/findings.md §14.9); an idle loop costs one claim query per
        ``poll_interval``.
        """
        await asyncio.gather(*(self._loop() for _ in range(loops)))

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                count = await self._cycle_with_backoff()
            except _Stopping:
                break
            except Exception:  # stopped while backing off: the last error is re-raised
                if self._stopping.is_set():
                    break
                raise
            if count < self._batch_size:
                await self._idle()

    async def _idle(self) -> None:
        self._wake.clear()
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll_interval)

    async def _sleep(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _should_stop(self, retry_state: RetryCallState) -> bool:
        return self._stopping.is_set()

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "relay cycle failed (attempt %d): %r; retrying in %.1fs",
            retry_state.attempt_number,
            error,
            wait,
        )

    async def _cycle_with_backoff(self) -> int:
        retrying = AsyncRetrying(
            retry=retry_if_not_exception_type(_Stopping),
            wait=self._wait,
            stop=self._should_stop,
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        count: int = await retrying(self._cycle)
        return count

    async def _cycle(self) -> int:
        if self._stopping.is_set():
            raise _Stopping
        claim = self.new_claim()
        events = await self._repository.claim_pending(
            claim, limit=self._batch_size, now=self._clock()
        )
        if events:
            await self._publish(claim, events)
        if len(events) < self._batch_size:  # caught up: a cheap moment to refresh the gauges
            backlog = await self._repository.backlog()
            telemetry.set_backlog(backlog.count, backlog.oldest_accepted_at)
        return len(events)

    async def _publish(
        self,
        claim: str,
        events: list[ClaimedEvent],
        prepared: dict[str, ServiceBusMessage] | None = None,
    ) -> None:
        """Send or schedule claimed rows and record the outcome.

        Raises:
            Exception: a send or a database update failed; the rows not yet recorded are
                released (best effort; otherwise their lease runs out).
        """
        now = self._clock()
        remaining = {e.id for e in events}
        immediate: dict[str, list[tuple[str, ServiceBusMessage]]] = defaultdict(list)
        scheduled: dict[tuple[str, datetime], list[tuple[str, ServiceBusMessage]]] = defaultdict(
            list
        )
        contexts: dict[str, str | None] = {}
        try:
            for event in events:
                try:
                    message = (prepared or {}).get(event.id) or _stored_message(event)
                except (ContractViolation, MessageTooLarge, ValueError, KeyError) as exc:
                    await self._unpublishable(event.id, f"stored envelope cannot be sent: {exc}")
                    remaining.discard(event.id)
                    continue
                telemetry.attach_context(message, event.trace_context)
                contexts[event.id] = event.trace_context
                if event.deliver_at is not None and event.deliver_at > now + SCHEDULE_THRESHOLD:
                    scheduled[(event.queue, event.deliver_at)].append((event.id, message))
                else:
                    immediate[event.queue].append((event.id, message))
            for queue, items in immediate.items():
                try:
                    with telemetry.send_span(queue, "send", [contexts[i] for i, _ in items]):
                        too_large = await self._transport.send(queue, [m for _, m in items])
                except Exception:
                    self._stats.publish_failed += len(items)
                    raise
                for event_id in too_large:
                    await self._unpublishable(
                        event_id, f"larger than the maximum message size of queue {queue!r}"
                    )
                sent = [i for i, _ in items if i not in too_large]
                await self.marks.mark(sent)
                self._stats.published += len(sent)
                remaining.difference_update(i for i, _ in items)
            for (queue, at), items in scheduled.items():
                try:
                    with telemetry.send_span(queue, "schedule", [contexts[i] for i, _ in items]):
                        numbers = await self._transport.schedule(queue, [m for _, m in items], at)
                except Exception:
                    self._stats.publish_failed += len(items)
                    raise
                await self._repository.mark_scheduled(
                    {i: n for (i, _), n in zip(items, numbers, strict=True)}, now=self._clock()
                )
                self._stats.scheduled += len(items)
                remaining.difference_update(i for i, _ in items)
        except BaseException as exc:
            if remaining:
                with suppress(Exception):
                    await asyncio.shield(
                        self._repository.release(sorted(remaining), claim, error=repr(exc))
                    )
            raise

    async def _unpublishable(self, event_id: str, reason: str) -> None:
        logger.error("event %s can never be published: %s", event_id, reason)
        self._stats.unpublishable += 1
        await self._repository.mark_failed(event_id, reason, now=self._clock())
