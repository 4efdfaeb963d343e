"""Event status, cancellation of notifications, and counters."""

from datetime import UTC, datetime

from fastapi import APIRouter, Path

from producer.api.deps import PublisherDep
from producer.api.schemas import EventStatus, Stats
from producer.auth import PrincipalDep
from producer.errors import EventNotFoundError
from producer.outbox.models import OutboxStatus
from producer.outbox.records import OutboxRecord
from producer.problems import problem_responses

router = APIRouter(tags=["events"])

EventId = Path(min_length=1, max_length=128, description="The id returned by the POST")


def event_status(record: OutboxRecord, now: datetime | None = None) -> EventStatus:
    """The API view of an outbox row.

    A ``scheduled`` row whose scheduled enqueue time has passed is reported as
    ``published`` (its message is on the queue), with ``published_at`` = that time. A
    cancelled or failed row has no ``scheduled_enqueue_time``: it will never be delivered.
    """
    now = now or datetime.now(UTC)
    state = record.status.value
    published_at = scheduled_at = cancelled_at = None
    if record.status is OutboxStatus.PUBLISHED:
        published_at = record.finished_at
    elif record.status is OutboxStatus.SCHEDULED:
        scheduled_at = record.finished_at
        if record.deliver_at is not None and record.deliver_at <= now:
            state, published_at = "published", record.deliver_at
    elif record.status is OutboxStatus.CANCELLED:
        cancelled_at = record.finished_at
    return EventStatus(
        id=record.id,
        type=record.event_type,
        queue=record.queue,
        source=record.source,
        status=state,
        accepted_at=record.accepted_at,
        published_at=published_at,
        scheduled_at=scheduled_at,
        deliver_at=record.deliver_at,
        scheduled_enqueue_time=(
            None
            if record.status in (OutboxStatus.CANCELLED, OutboxStatus.FAILED)
            else record.deliver_at
        ),
        cancelled_at=cancelled_at,
        sequence_number=record.sequence_number,
        attempts=record.attempts,
        last_error=record.last_error if record.status is not OutboxStatus.PUBLISHED else None,
        links={"self": f"/v1/events/{record.id}"},
    )


@router.get(
    "/events/{event_id}",
    summary="Status of an accepted event",
    responses=problem_responses(401, 403, 404, 503),
)
async def get_event(
    publisher: PublisherDep, principal: PrincipalDep, event_id: str = EventId
) -> EventStatus:
    """Where the event is: accepted, published (with the sequence number when Service Bus
    returned one), scheduled for a time, cancelled, or failed. Callers see only their own
    events (404 otherwise); rows are pruned after the retention period."""
    record = await publisher.get(event_id)
    if record.source != principal.source:
        raise EventNotFoundError(f"no event with id {event_id!r}")
    return event_status(record)


@router.delete(
    "/notifications/{event_id}",
    summary="Cancel a notification not yet delivered",
    responses=problem_responses(401, 403, 404, 409, 503),
)
async def cancel_notification(
    publisher: PublisherDep, principal: PrincipalDep, event_id: str = EventId
) -> EventStatus:
    """Cancel a notification that is still in the outbox or scheduled for later
    (``cancel_scheduled_messages``). 409 once it is published: sent to its queue, or its
    scheduled enqueue time has passed (a consumer may already have it), and when it failed;
    cancelling a cancelled notification answers 200 again."""
    record = await publisher.cancel(event_id, source=principal.source)
    return event_status(record)


@router.get("/stats", summary="Counters since start-up", responses=problem_responses(401, 403))
async def get_stats(publisher: PublisherDep, principal: PrincipalDep) -> Stats:
    """Events accepted, published, scheduled, cancelled and failed by this process."""
    s = publisher.stats
    return Stats(
        accepted=s.accepted,
        published=s.published,
        publish_failed=s.publish_failed,
        scheduled=s.scheduled,
        cancelled=s.cancelled,
        unpublishable=s.unpublishable,
        idempotent_replays=s.idempotent_replays,
        commit_groups=s.commit_groups,
        grouped_events=s.grouped_events,
    )
