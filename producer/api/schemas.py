"""Request and response bodies of the v1 API (times are RFC 3339, UTC)."""

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from contracts import AuditEvent, NotificationEvent

MAX_BATCH_EVENTS: Final = 100
"""Most events in one batch request."""

EventState = Literal["accepted", "published", "scheduled", "cancelled", "failed"]


class Accepted(BaseModel):
    """An event committed to the outbox; it is published in the background.

    ``status`` is always ``accepted``: follow ``links.status`` (``GET /v1/events/{id}``) to
    see it published or scheduled.
    """

    id: str = Field(description="Event id; also the Service Bus message id")
    type: str = Field(description="CloudEvents type")
    queue: str = Field(description="Destination queue")
    status: Literal["accepted"] = "accepted"
    deliver_at: datetime | None = Field(None, description="Scheduled enqueue time, if any")
    links: dict[str, str] = Field(description='{"status": "/v1/events/<id>"}')


class AcceptedBatch(BaseModel):
    """Every event of a batch, in request order."""

    events: list[Accepted]


class AuditEventBatch(BaseModel):
    """Up to 100 audit events, accepted all together or not at all."""

    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[AuditEvent], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]


class NotificationBatch(BaseModel):
    """Up to 100 notifications, accepted all together or not at all."""

    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[NotificationEvent], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]


def batch_model(data_model: type[BaseModel], title: str) -> type[BaseModel]:
    """The batch body of an event type without a batch model of its own.

    Args:
        data_model: The event's model (``contracts.registry.EventSpec.data_model``).
        title: Its human title, for the description.

    Returns:
        ``<Model>Batch``: ``{"events": [...]}``, 1-100 events, no other field, like
        :class:`AuditEventBatch`.
    """
    # A field type built at run time, which a static checker cannot follow.
    events: Any = Annotated[list[data_model], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]  # type: ignore[valid-type]
    return create_model(
        f"{data_model.__name__}Batch",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"Up to {MAX_BATCH_EVENTS} events ({title}), accepted all together or not at all.",
        events=(events, ...),
    )


class EventStatus(BaseModel):
    """Where an accepted event is.

    ``status``: ``accepted`` (in the outbox, not yet on Service Bus), ``published`` (on its
    queue; for a scheduled notification: its scheduled time has passed), ``scheduled``
    (on Service Bus, becomes visible at ``scheduled_enqueue_time``), ``cancelled``, or
    ``failed`` (can never be sent; ``last_error`` says why). Only a notification that
    will still be delivered, or was, has a ``scheduled_enqueue_time``; once cancelled it is
    null and ``deliver_at`` keeps the time that was asked for.
    """

    id: str
    type: str
    queue: str
    source: str = Field(description="The caller that sent it")
    status: EventState
    accepted_at: datetime
    published_at: datetime | None = Field(
        None, description="When Service Bus accepted it (or its scheduled message became active)"
    )
    scheduled_at: datetime | None = Field(
        None, description="When it was scheduled on Service Bus (status scheduled only)"
    )
    deliver_at: datetime | None = Field(
        None,
        description="The notification's deliver_at as the caller sent it; kept after a "
        "cancellation or a failure, when it will never be delivered",
    )
    scheduled_enqueue_time: datetime | None = Field(
        None,
        description="When the notification becomes (or became) visible on its queue; null "
        "when it never will (cancelled, failed)",
    )
    cancelled_at: datetime | None = Field(None, description="When it was cancelled")
    sequence_number: int | None = Field(
        None,
        description="Service Bus sequence number (known for scheduled messages; a cancelled "
        "one keeps the number its scheduled message had)",
    )
    attempts: int = Field(description="Publish attempts so far")
    last_error: str | None = Field(None, description="Why the last attempt failed, if it did")
    links: dict[str, str]


class Stats(BaseModel):
    """Process-local counters since start-up (each replica counts its own)."""

    accepted: int
    published: int
    publish_failed: int
    scheduled: int
    cancelled: int
    unpublishable: int
    idempotent_replays: int
    commit_groups: int = Field(
        description="Outbox transactions that committed concurrent requests' events together"
    )
    grouped_events: int = Field(
        description="Events those transactions committed; divided by commit_groups, the mean"
        " group size (one transaction, send and update shared by that many events)"
    )
