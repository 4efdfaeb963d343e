"""The library API: publish events durably from any FastAPI (or asyncio) application.

:meth:`EventPublisher.publish` writes the event to the outbox table and returns once that
write is committed -- in its own transaction, or in the caller's SQLAlchemy session so the
event is committed atomically with the caller's own changes. The event is then sent to
Service Bus in the background; if that fails (Service Bus down, process killed), the relay
loop of this or another replica publishes it later. An event is never lost once
``publish`` returned (own transaction) or the caller's transaction committed.

Example (see ``examples/orders_app.py`` for a complete application)::

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with open_event_publisher(ProducerSettings()) as publisher:
            app.state.event_publisher = publisher
            yield

    @app.post("/invoices/{invoice_id}/approve")
    async def approve(invoice_id: str, publisher: EventPublisherDep) -> dict[str, str]:
        accepted = await publisher.publish(AuditEvent(...))
        return {"event_id": accepted.id}
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import MessageNotFoundError, ServiceBusError
from fastapi import BackgroundTasks, Depends, Request
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from common.servicebus import open_servicebus_client
from contracts import (
    AUDIT_EVENT_TYPE,
    NOTIFICATION_EVENT_TYPE,
    AuditEvent,
    EventEnvelope,
    MessageTooLarge,
    NotificationEvent,
    new_envelope,
)
from contracts.servicebus import to_servicebus_message
from producer import telemetry
from producer.errors import (
    CancellationPendingError,
    DuplicateEventError,
    EventNotFoundError,
    EventTooLargeError,
    IdempotencyConflictError,
    NotCancellableError,
    OutboxUnavailableError,
)
from producer.group_commit import GroupCommit
from producer.idempotency import IdempotencyKey
from producer.outbox.database import create_outbox_engine, run_migrations
from producer.outbox.models import OutboxStatus
from producer.outbox.pruning import Pruner
from producer.outbox.relay import PublishStats, Relay, utc_now
from producer.outbox.repository import Backlog, NewEvent, OutboxRecord, OutboxRepository
from producer.settings import ProducerSettings
from producer.shutdown import ShutdownDeadline
from producer.startup import require_queues
from producer.transport import ServiceBusTransport

logger = logging.getLogger(__name__)

CANCEL_WAIT = timedelta(seconds=5)
"""How long a cancellation waits for an in-flight publish of the same event to finish."""
READINESS_DB_TIMEOUT = 2.0
"""Seconds the readiness check gives the database."""

_DATABASE_ERRORS = (SQLAlchemyError, OSError, TimeoutError)


def _unavailable(exc: BaseException) -> OutboxUnavailableError:
    return OutboxUnavailableError(f"the outbox database is unavailable: {exc!r}")


@dataclass(frozen=True)
class Submission:
    """An envelope to publish, with its optional scheduled enqueue time.

    Attributes:
        envelope: The CloudEvents envelope (its id is the message id).
        deliver_at: When the message becomes visible (aware); ``None`` for now.
    """

    envelope: EventEnvelope
    deliver_at: datetime | None = None


@dataclass(frozen=True)
class AcceptedEvent:
    """An event committed to the outbox.

    Attributes:
        id: Event id (= Service Bus message id).
        type: CloudEvents type.
        queue: Destination queue.
        deliver_at: Scheduled enqueue time (UTC), if any.
        replayed: ``True`` when answered from an earlier request with the same
            ``Idempotency-Key`` (nothing new was written).
    """

    id: str
    type: str
    queue: str
    deliver_at: datetime | None = None
    replayed: bool = False


@dataclass(frozen=True)
class Check:
    """One readiness check: ``ok`` plus details for the response body."""

    ok: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Readiness:
    """The outcome of :meth:`EventPublisher.readiness`."""

    ready: bool
    checks: dict[str, Check]


class EventPublisher:
    """Durable, background-published events (one per process; see :func:`open_event_publisher`).

    Args:
        settings: The producer's settings (queues, limits, timeouts).
        repository: The outbox.
        transport: Service Bus senders.
        relay: Publishes committed rows.
    """

    def __init__(
        self,
        settings: ProducerSettings,
        repository: OutboxRepository,
        transport: ServiceBusTransport,
        relay: Relay,
        stats: PublishStats,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.transport = transport
        self.relay = relay
        self.stats = stats
        self._queues = {
            AUDIT_EVENT_TYPE: settings.audit_queue,
            NOTIFICATION_EVENT_TYPE: settings.notifications_queue,
        }
        self._tasks: set[asyncio.Task[None]] = set()
        self.shutting_down = False
        self._group = GroupCommit(self, linger=settings.group_commit_linger.total_seconds())

    # --- building ---------------------------------------------------------------------------

    def queue_for(self, event_type: str) -> str:
        """The queue events of ``event_type`` go to (``KeyError`` if unrouted)."""
        return self._queues[event_type]

    def envelope(
        self,
        event: AuditEvent | NotificationEvent,
        *,
        source: str | None = None,
        subject: str | None = None,
        correlation_id: str | None = None,
    ) -> EventEnvelope:
        """Wrap ``event`` in a new envelope (new id, current time).

        Args:
            event: The event.
            source: CloudEvents ``source``; default ``settings.source``.
            subject: Default for audit events: ``<resource type>/<resource id>``.
            correlation_id: Request or flow id (becomes the message's correlation id).

        Raises:
            pydantic.ValidationError: an attribute breaks its constraint.
        """
        if subject is None and isinstance(event, AuditEvent):
            subject = f"{event.resource.type}/{event.resource.id}"
        return new_envelope(
            event,
            source=source or self.settings.source,
            subject=subject,
            correlationid=correlation_id,
        )

    def _prepare(self, submission: Submission) -> tuple[NewEvent, ServiceBusMessage]:
        envelope = submission.envelope
        try:
            message = to_servicebus_message(envelope, max_size=self.settings.max_message_bytes)
        except MessageTooLarge as exc:
            raise EventTooLargeError(exc.size, exc.limit) from None
        deliver_at = submission.deliver_at
        if deliver_at is None:
            deliver_at = getattr(envelope.data, "deliver_at", None)
        if deliver_at is not None:
            if deliver_at.tzinfo is None:
                raise ValueError("deliver_at must be timezone-aware")
            deliver_at = deliver_at.astimezone(UTC)
        queue = self.queue_for(envelope.type)
        row = NewEvent(
            id=envelope.id,
            event_type=envelope.type,
            queue=queue,
            source=envelope.source,
            # The structured message body is the envelope's JSON: store those bytes rather
            # than serializing the envelope a second time (~3 % of a request's CPU).
            body=b"".join(message.body).decode(),
            deliver_at=deliver_at,
            trace_context=telemetry.creation_context(queue, envelope.id, envelope.type),
        )
        return row, message

    # --- publishing -------------------------------------------------------------------------

    async def publish(
        self,
        event: AuditEvent | NotificationEvent | EventEnvelope,
        *,
        session: AsyncSession | None = None,
        background: BackgroundTasks | None = None,
        source: str | None = None,
        subject: str | None = None,
        correlation_id: str | None = None,
        deliver_at: datetime | None = None,
    ) -> AcceptedEvent:
        """Commit one event to the outbox; it is published to Service Bus in the background.

        Args:
            event: An event (wrapped with :meth:`envelope`) or a ready envelope.
            session: Join this SQLAlchemy session's transaction instead of committing: the
                event is written when the session flushes and exists only if the caller
                commits; publication starts after that commit. The session must use the
                outbox database.
            background: Not used by this method (kept for compatibility): an event
                committed in its own transaction is published by a task of this
                publisher right after the commit that holds it, together with the events
                of concurrent calls committed in the same transaction.
            source, subject, correlation_id: See :meth:`envelope` (ignored for envelopes).
            deliver_at: Scheduled enqueue time (aware); default the notification's
                ``deliver_at``, if any.

        Returns:
            The accepted event.

        Raises:
            EventTooLargeError: the message would exceed ``max_message_bytes``.
            DuplicateEventError: an envelope with this id was already accepted.
            OutboxUnavailableError: the outbox database could not be written.
        """
        envelope = (
            event
            if not isinstance(event, AuditEvent | NotificationEvent)
            else self.envelope(event, source=source, subject=subject, correlation_id=correlation_id)
        )
        [accepted] = await self.publish_many(
            [Submission(envelope, deliver_at)], session=session, background=background
        )
        return accepted

    async def publish_many(
        self,
        submissions: Sequence[Submission],
        *,
        session: AsyncSession | None = None,
        background: BackgroundTasks | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> list[AcceptedEvent]:
        """Commit several events in one transaction (all or none); see :meth:`publish`.

        Args:
            submissions: The events, in order.
            session: Join this session's transaction (see :meth:`publish`).
            background: Run the publish as a FastAPI background task; used only with
                ``idempotency`` (other events are published right after their commit).
            idempotency: Record the caller's ``Idempotency-Key``: if it was used before
                with the same fingerprint, nothing is written and the original events are
                returned (``replayed=True``). Not combinable with ``session``.

        Returns:
            One :class:`AcceptedEvent` per submission, in order.

        Raises:
            EventTooLargeError: a message would exceed ``max_message_bytes``.
            IdempotencyConflictError: the key was used with a different request.
            DuplicateEventError: an envelope id was already accepted.
            OutboxUnavailableError: the outbox database could not be written.
            ValueError: ``idempotency`` with ``session``, or a naive ``deliver_at``.
        """
        prepared = [self._prepare(s) for s in submissions]
        rows = [row for row, _ in prepared]
        accepted = [
            AcceptedEvent(id=r.id, type=r.event_type, queue=r.queue, deliver_at=r.deliver_at)
            for r in rows
        ]
        if not rows:
            return []
        if idempotency is None and session is None:
            try:
                await self._group.insert(rows, {row.id: message for row, message in prepared})
            except IntegrityError as exc:
                raise DuplicateEventError("an event with this id was already accepted") from exc
            except _DATABASE_ERRORS as exc:
                raise _unavailable(exc) from exc
            self.stats.accepted += len(rows)
            return accepted
        # While Service Bus is failing, leave new rows to the relay (which backs off)
        # instead of starting a doomed send per request.
        claim = None if self.transport.health.reachable is False else self.relay.new_claim()
        if session is not None:
            if idempotency is not None:
                raise ValueError("idempotency keys cannot be combined with a caller's session")
            self._check_same_database(session)
            await self.repository.insert(session, rows, claim=claim, now=utc_now())
            self._after_commit(session, claim, len(rows))
            return accepted
        try:
            replay = await self._insert(rows, claim, idempotency)
        except IntegrityError as exc:
            if idempotency is None:
                raise DuplicateEventError("an event with this id was already accepted") from exc
            replay = await self._replay(idempotency)  # the same key won a concurrent race
        except _DATABASE_ERRORS as exc:
            raise _unavailable(exc) from exc
        if replay is not None:
            self.stats.idempotent_replays += 1
            return [
                AcceptedEvent(
                    id=i, type=a.type, queue=a.queue, deliver_at=a.deliver_at, replayed=True
                )
                for i, a in zip(replay, accepted, strict=False)
            ]
        self.stats.accepted += len(rows)
        self._kick(claim, background)
        return accepted

    async def _insert(
        self, rows: list[NewEvent], claim: str | None, idempotency: IdempotencyKey | None
    ) -> list[str] | None:
        """Insert rows (and the key); returns the original ids instead if the key was used."""
        async with self.repository.engine.begin() as connection:
            if idempotency is not None:
                found = await self.repository.find_idempotency_key(
                    connection, idempotency.principal, idempotency.key
                )
                if found is not None:
                    if found.fingerprint != idempotency.fingerprint:
                        raise IdempotencyConflictError(
                            "this Idempotency-Key was already used with a different request"
                        )
                    return found.event_ids
            now = utc_now()
            await self.repository.insert(connection, rows, claim=claim, now=now)
            if idempotency is not None:
                await self.repository.insert_idempotency_key(
                    connection,
                    idempotency.principal,
                    idempotency.key,
                    fingerprint=idempotency.fingerprint,
                    event_ids=[r.id for r in rows],
                    now=now,
                )
        return None

    async def _replay(self, idempotency: IdempotencyKey) -> list[str]:
        try:
            async with self.repository.engine.connect() as connection:
                found = await self.repository.find_idempotency_key(
                    connection, idempotency.principal, idempotency.key
                )
        except _DATABASE_ERRORS as exc:
            raise _unavailable(exc) from exc
        if found is None:
            raise DuplicateEventError("an event with this id was already accepted")
        if found.fingerprint != idempotency.fingerprint:
            raise IdempotencyConflictError(
                "this Idempotency-Key was already used with a different request"
            )
        return found.event_ids

    def _check_same_database(self, session: AsyncSession) -> None:
        bind = session.bind
        if bind is None:
            return
        ours = self.repository.engine.url.render_as_string(hide_password=False)
        if bind.engine.url.render_as_string(hide_password=False) != ours:
            raise ValueError("the session uses a different database than the outbox")

    def _after_commit(self, session: AsyncSession, claim: str | None, count: int) -> None:
        sync_session = session.sync_session
        loop = asyncio.get_running_loop()

        def committed(_: Session) -> None:
            with suppress(Exception):
                sa_event.remove(sync_session, "after_rollback", rolled_back)
            self.stats.accepted += count
            loop.call_soon(self._kick, claim, None)

        def rolled_back(_: Session) -> None:
            with suppress(Exception):
                sa_event.remove(sync_session, "after_commit", committed)

        sa_event.listen(sync_session, "after_commit", committed, once=True)
        sa_event.listen(sync_session, "after_rollback", rolled_back, once=True)

    def _kick(self, claim: str | None, background: BackgroundTasks | None) -> None:
        if claim is None or self.relay.stopping:
            self.relay.notify()
        elif background is not None:
            background.add_task(self.relay.publish_claim, claim)
        else:
            self._spawn(self.relay.publish_claim(claim))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- status and cancellation ------------------------------------------------------------

    async def get(self, event_id: str) -> OutboxRecord:
        """The outbox row of ``event_id``.

        Raises:
            EventNotFoundError: unknown or pruned.
            OutboxUnavailableError: the database could not be read.
        """
        try:
            record = await self.repository.get(event_id)
        except _DATABASE_ERRORS as exc:
            raise _unavailable(exc) from exc
        if record is None:
            raise EventNotFoundError(f"no event with id {event_id!r}")
        return record

    async def cancel(self, event_id: str, *, source: str | None = None) -> OutboxRecord:
        """Cancel a notification that has not been delivered yet.

        Not yet sent: it never will be. Scheduled for later: its scheduled message is
        cancelled (``cancel_scheduled_messages``,
        https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing#scheduled-messages).
        Cancelling a cancelled notification returns it unchanged.

        Args:
            event_id: The notification's id.
            source: When given, only the caller that created it may cancel it.

        Returns:
            The row, now ``cancelled``.

        Raises:
            EventNotFoundError: no such notification (or another caller's).
            NotCancellableError: already delivered (published, or its scheduled time has
                passed), or failed.
            CancellationPendingError: it is being published right now; retry.
            OutboxUnavailableError: the database or Service Bus could not be reached.
        """
        deadline = asyncio.get_running_loop().time() + CANCEL_WAIT.total_seconds()
        while True:
            record = await self.get(event_id)
            if record.event_type != NOTIFICATION_EVENT_TYPE or (
                source is not None and record.source != source
            ):
                raise EventNotFoundError(f"no notification with id {event_id!r}")
            now = utc_now()
            if record.status is OutboxStatus.CANCELLED:
                return record
            if record.status is OutboxStatus.SCHEDULED:
                return await self._cancel_scheduled(record, now)
            if record.status is OutboxStatus.PUBLISHED:
                raise NotCancellableError(
                    "the notification is already published (sent to its queue); it can be "
                    "cancelled only before it is published",
                    record.status.value,
                )
            if record.status is not OutboxStatus.ACCEPTED:
                raise NotCancellableError(
                    f"the notification is {record.status.value} (it can never be sent); "
                    "there is nothing to cancel",
                    record.status.value,
                )
            try:
                cancelled = await self.repository.cancel_unsent(event_id, now=now)
            except _DATABASE_ERRORS as exc:
                raise _unavailable(exc) from exc
            if cancelled:
                self.stats.cancelled += 1
                return await self.get(event_id)
            if asyncio.get_running_loop().time() > deadline:
                raise CancellationPendingError(
                    "the notification is being published right now; retry in a few seconds"
                )
            await asyncio.sleep(0.1)

    async def _cancel_scheduled(self, record: OutboxRecord, now: datetime) -> OutboxRecord:
        if record.deliver_at is None or record.deliver_at <= now or record.sequence_number is None:
            raise NotCancellableError(
                "the notification's scheduled enqueue time has passed, so it is published "
                "(on its queue); it can be cancelled only before that time",
                "published",
            )
        try:
            await self.transport.cancel(record.queue, [record.sequence_number])
        except MessageNotFoundError:
            raise NotCancellableError(
                "the scheduled message is no longer pending: its scheduled enqueue time has "
                "passed, so it is published (on its queue)",
                "published",
            ) from None
        except (ServiceBusError, TimeoutError) as exc:
            raise OutboxUnavailableError(f"Service Bus is unavailable: {exc!r}") from exc
        try:
            await self.repository.mark_cancelled(record.id, now=utc_now())
        except _DATABASE_ERRORS as exc:
            raise _unavailable(exc) from exc
        self.stats.cancelled += 1
        return await self.get(record.id)

    # --- operations -------------------------------------------------------------------------

    async def readiness(self) -> Readiness:
        """Database reachable, Service Bus not failing, its queues exist, backlog below the
        threshold.

        The body of ``/readyz`` reports every check, including the backlog, also when one
        fails.
        """
        checks: dict[str, Check] = {}
        backlog: Backlog | None = None
        try:
            async with asyncio.timeout(READINESS_DB_TIMEOUT):
                backlog = await self.repository.backlog()
            checks["database"] = Check(True)
        except Exception as exc:
            checks["database"] = Check(False, {"error": f"{type(exc).__name__}: {exc}"[:300]})
        health = self.transport.health
        reachable = health.reachable
        checks["servicebus"] = Check(
            reachable is not False or not self.settings.readiness_requires_servicebus,
            {
                "reachable": reachable,
                "last_success_at": health.last_success_at,
                "last_failure_at": health.last_failure_at,
                "last_error": health.last_error if reachable is False else None,
            },
        )
        limit = self.settings.readiness_max_backlog
        if backlog is None:
            checks["outbox"] = Check(False, {"backlog": None, "max_backlog": limit})
        else:
            oldest = backlog.oldest_accepted_at
            checks["outbox"] = Check(
                backlog.count <= limit,
                {
                    "backlog": backlog.count,
                    "max_backlog": limit,
                    "oldest_pending_age_seconds": (
                        None if oldest is None else round((utc_now() - oldest).total_seconds(), 3)
                    ),
                },
            )
        missing = sorted(health.missing_queues)
        checks["queues"] = Check(
            not missing or not self.settings.readiness_requires_servicebus,
            {
                "missing": missing,
                "hint": (
                    f"create {', '.join(missing)} in the namespace or point "
                    "PRODUCER_AUDIT_QUEUE / PRODUCER_NOTIFICATIONS_QUEUE at existing queues"
                    if missing
                    else None
                ),
            },
        )
        checks["lifecycle"] = Check(not self.shutting_down, {"shutting_down": self.shutting_down})
        return Readiness(all(c.ok for c in checks.values()), checks)


@asynccontextmanager
async def open_event_publisher(
    settings: ProducerSettings,
    *,
    engine: AsyncEngine | None = None,
    check_queues: bool = True,
    shutdown: ShutdownDeadline | None = None,
) -> AsyncIterator[EventPublisher]:
    """Start the outbox publisher of this process; stop it gracefully on exit.

    On entry: migrate the outbox (if ``settings.migrate_on_startup``), check that the
    queues exist (:func:`producer.startup.require_queues`; an unreachable Service Bus does
    not stop the start, the outbox keeps what is accepted), open the Service Bus client,
    start the relay loop and the pruner. On exit, by one deadline
    (:mod:`producer.shutdown`): in-flight publishes, the relay and the pruner finish or are
    cancelled, then leases are released while the senders and the client close, at once;
    whatever is unpublished stays in the outbox. Logs how long before (or after) the
    deadline it finished.

    Args:
        settings: The producer's settings.
        engine: Use this engine (e.g. the application's, to join its transactions);
            otherwise one is created from ``settings.database_url`` and disposed on exit.
        check_queues: Check the queues at start-up (up to
            ``producer.startup.QUEUE_CHECK_TIMEOUT`` seconds when Service Bus is slow).
        shutdown: The process's shutdown deadline, started at SIGTERM by the server;
            by default one of ``settings.shutdown_grace`` started when the exit begins
            (it is started then anyway if nothing started it).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database is unreachable or migrating failed.
        MissingQueueError: Service Bus says a queue does not exist.
    """
    deadline = shutdown or ShutdownDeadline(settings.shutdown_grace.total_seconds())
    own_engine = engine is None
    outbox_engine = engine if engine is not None else create_outbox_engine(settings.database_url)
    stopping = False
    try:
        if settings.migrate_on_startup:
            await run_migrations(outbox_engine)
        if check_queues:
            await require_queues(settings)
        repository = OutboxRepository(outbox_engine, lease=settings.relay_lease)
        stats = PublishStats()
        async with AsyncExitStack() as servicebus:
            client = await servicebus.enter_async_context(open_servicebus_client(settings))
            transport = ServiceBusTransport(
                client,
                operation_timeout=settings.servicebus_operation_timeout.total_seconds(),
                max_batch_messages=settings.publish_batch_size,
                senders_per_queue=settings.senders_per_queue,
            )
            servicebus.push_async_callback(transport.close)  # if the start fails
            relay = Relay(
                repository,
                transport,
                instance_id=settings.instance_id,
                batch_size=settings.publish_batch_size,
                poll_interval=settings.relay_poll_interval.total_seconds(),
                backoff_initial=settings.relay_backoff_initial.total_seconds(),
                backoff_max=settings.relay_backoff_max.total_seconds(),
                max_message_bytes=settings.max_message_bytes,
                stats=stats,
            )
            pruner = Pruner(
                repository,
                retention=settings.outbox_retention,
                idempotency_retention=settings.idempotency_retention,
                interval=settings.prune_interval,
            )
            publisher = EventPublisher(settings, repository, transport, relay, stats)
            background = [
                asyncio.create_task(relay.run(), name="outbox-relay"),
                asyncio.create_task(pruner.run(), name="outbox-pruner"),
            ]
            try:
                yield publisher
            finally:
                stopping = True
                deadline.start()
                pruner.request_stop()
                await _stop(publisher, background, servicebus.pop_all(), deadline)
    finally:
        if own_engine:
            await _dispose(outbox_engine, deadline)
    if stopping:
        left = deadline.left()
        logger.info(
            "shutdown finished %.1f s %s its deadline (PRODUCER_SHUTDOWN_GRACE=%g s)",
            abs(left),
            "before" if left >= 0 else "after",
            deadline.grace,
        )


async def _stop(
    publisher: EventPublisher,
    background: list["asyncio.Task[None]"],
    servicebus: AsyncExitStack,
    deadline: ShutdownDeadline,
) -> None:
    """Shut the publisher down by ``deadline`` (steps 1 and 2 of :mod:`producer.shutdown`).

    Publishes, the relay loops and the pruner get until the reserve; then, at once, the
    database side (cancelled publishes release their rows, waiting published marks are
    written, this process's leases are released) and the Service Bus side (every sender,
    then the client, closes), both given up at the deadline.
    """
    publisher.shutting_down = True
    publisher.relay.request_stop()
    await publisher._group.close()
    work = {*publisher._tasks, *background}
    _, pending = await asyncio.wait(work, timeout=deadline.work_left())
    for task in pending:
        task.cancel()
    publishes = len(pending - set(background))
    if publishes:
        logger.warning("left %d in-flight publishes to the outbox", publishes)

    async def database() -> None:
        if pending:
            await asyncio.wait(pending)  # each releases its rows for the relay
        await publisher.relay.marks.wait_flushed()
        with suppress(*_DATABASE_ERRORS):
            released = await publisher.repository.release_instance(publisher.settings.instance_id)
            if released:
                logger.info("released %d unpublished outbox rows for other replicas", released)

    async def close_servicebus() -> None:
        await publisher.transport.close()
        try:
            await servicebus.aclose()
        except Exception as exc:  # the process is ending: say so, do not fail the exit
            logger.warning("closing the Service Bus client failed: %r", exc)

    try:
        async with asyncio.timeout(deadline.close_left()):
            await asyncio.gather(database(), close_servicebus())
    except TimeoutError:
        logger.warning(
            "shutdown deadline reached while releasing leases or closing the Service Bus "
            "client: left to end with the process (unreleased rows wait out their lease)"
        )
    for task in background:
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.error("%s failed", task.get_name(), exc_info=task.exception())


async def _dispose(engine: AsyncEngine, deadline: ShutdownDeadline) -> None:
    """Dispose of the outbox engine, waiting no longer than the shutdown deadline."""
    try:
        async with asyncio.timeout(deadline.close_left()):
            await engine.dispose()
    except TimeoutError:
        logger.warning("outbox database connections still closing at the shutdown deadline")


async def get_event_publisher(request: Request) -> EventPublisher:
    """FastAPI dependency: the publisher stored in ``app.state.event_publisher``.

    ``async`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in its
    thread pool, a thread hop per request for a dictionary lookup.

    Raises:
        RuntimeError: the application's lifespan did not set it.
    """
    publisher = getattr(request.app.state, "event_publisher", None)
    if not isinstance(publisher, EventPublisher):
        raise RuntimeError(
            "app.state.event_publisher is not set: enter open_event_publisher() in the lifespan"
        )
    return publisher


EventPublisherDep = Annotated[EventPublisher, Depends(get_event_publisher)]
"""Annotate a route parameter with this to receive the process's :class:`EventPublisher`."""
