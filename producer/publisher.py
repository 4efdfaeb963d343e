"""The publisher service: publish events durably from any FastAPI (or asyncio) application.

:meth:`EventPublisher.publish` writes the event to the outbox table and returns once that
write is committed -- in its own transaction, or in the caller's SQLAlchemy session so the
event is committed atomically with the caller's own changes. The event is then sent to
Service Bus in the background; if that fails (Service Bus down, process killed), the relay
loop of this or another replica publishes it later. An event is never lost once
``publish`` returned (own transaction) or the caller's transaction committed.

Example (both names come from the ``producer`` package; see ``examples/orders_app.py`` for
a complete application)::

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
from collections.abc import Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from azure.servicebus import ServiceBusMessage
from fastapi import BackgroundTasks
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from contracts import (
    AuditEvent,
    ContractModel,
    EventEnvelope,
    MessageTooLarge,
    new_envelope,
)
from contracts._types import utc_now
from contracts.envelope import Envelope
from contracts.registry import AUDIT_QUEUE, NOTIFICATIONS_QUEUE, queue_of
from contracts.servicebus import to_servicebus_message
from producer import telemetry
from producer.cancellation import cancel_notification, get_record
from producer.errors import (
    DuplicateEventError,
    EventTooLargeError,
    IdempotencyConflictError,
    OutboxUnavailableError,
)
from producer.idempotency import IdempotencyKey
from producer.outbox.database import DATABASE_ERRORS
from producer.outbox.group_commit import GroupCommit, Messages
from producer.outbox.records import NewEvent, OutboxRecord
from producer.outbox.relay import PublishStats, Relay
from producer.outbox.repository import OutboxRepository
from producer.readiness import Readiness, check_readiness
from producer.settings import ProducerSettings
from producer.transport import ServiceBusTransport

logger = logging.getLogger(__name__)


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


class EventPublisher:
    """Durable, background-published events (one per process, built and closed by
    :func:`producer.bootstrap.open_event_publisher`).

    Args:
        settings: The producer's settings (queues, limits, timeouts).
        repository: The outbox.
        transport: Service Bus senders.
        relay: Publishes committed rows.
        stats: Process-local counters.
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
            AUDIT_QUEUE: settings.audit_queue,
            NOTIFICATIONS_QUEUE: settings.notifications_queue,
        }
        self._tasks: set[asyncio.Task[None]] = set()
        self.shutting_down = False
        self._group = GroupCommit(
            repository,
            relay.marks,
            stats,
            new_claim=self._claim_for_new_rows,
            on_committed=self._publish_committed,
            linger=settings.group_commit_linger.total_seconds(),
        )

    # --- building ---------------------------------------------------------------------------

    def queue_for(self, event_type: str) -> str:
        """The queue events of ``event_type`` go to: its registered queue
        (:func:`contracts.registry.queue_of`) under the name the settings give it.

        Raises:
            KeyError: ``event_type`` is not registered.
        """
        return self._queues[queue_of(event_type)]

    def envelope(
        self,
        event: ContractModel,
        *,
        source: str | None = None,
        subject: str | None = None,
        correlation_id: str | None = None,
    ) -> EventEnvelope:
        """Wrap ``event`` in a new envelope (new id, current time).

        Args:
            event: The event: the data model of a registered event type
                (:func:`contracts.register`).
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
            # than serializing the envelope a second time, a cost every request would pay
            # (docs/benchmarks/findings.md §14.10).
            body=b"".join(message.body).decode(),
            deliver_at=deliver_at,
            trace_context=telemetry.creation_context(queue, envelope.id, envelope.type),
        )
        return row, message

    # --- publishing -------------------------------------------------------------------------

    async def publish(
        self,
        event: ContractModel | EventEnvelope,
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
        # An envelope of a type registered at run time is typed as EventEnvelope, as
        # contracts.writing.new_envelope types what it writes.
        envelope = (
            cast(EventEnvelope, event)
            if isinstance(event, Envelope)
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
            except DATABASE_ERRORS as exc:
                raise OutboxUnavailableError.from_database(exc) from exc
            self.stats.accepted += len(rows)
            return accepted
        claim = self._claim_for_new_rows()
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
        except DATABASE_ERRORS as exc:
            raise OutboxUnavailableError.from_database(exc) from exc
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
        except DATABASE_ERRORS as exc:
            raise OutboxUnavailableError.from_database(exc) from exc
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

    def _claim_for_new_rows(self) -> str | None:
        # While Service Bus is failing, leave new rows to the relay (which backs off)
        # instead of starting a doomed send per request.
        return None if self.transport.health.reachable is False else self.relay.new_claim()

    def _publish_committed(
        self, claim: str | None, rows: list[NewEvent], messages: Messages
    ) -> None:
        if claim is None or self.relay.stopping:
            self.relay.notify()
        else:
            self._spawn(self.relay.publish_inserted(claim, rows, messages))

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
        return await get_record(self.repository, event_id)

    async def cancel(self, event_id: str, *, source: str | None = None) -> OutboxRecord:
        """Cancel a notification that has not been delivered yet
        (:func:`producer.cancellation.cancel_notification`, which lists the errors)."""
        return await cancel_notification(
            self.repository, self.transport, self.stats, event_id, source=source
        )

    # --- operations -------------------------------------------------------------------------

    async def readiness(self) -> Readiness:
        """Database reachable, Service Bus not failing, its queues exist, backlog below the
        threshold (:func:`producer.readiness.check_readiness`)."""
        return await check_readiness(
            self.settings, self.repository, self.transport.health, shutting_down=self.shutting_down
        )

    @property
    def in_flight(self) -> frozenset["asyncio.Task[None]"]:
        """Publishes started after a commit and not finished yet."""
        return frozenset(self._tasks)

    async def stop_accepting(self) -> None:
        """Begin the shutdown: readiness fails, the relay stops polling, and events still
        waiting for a group commit fail with ``OutboxUnavailableError`` (nothing of theirs
        was committed). Publishes already started go on (:attr:`in_flight`)."""
        self.shutting_down = True
        self.relay.request_stop()
        await self._group.close()
