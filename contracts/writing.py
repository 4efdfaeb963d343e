"""Writing envelopes: an event model wrapped in the envelope of its registered type.

The envelope model is found in :mod:`contracts.registry` by the event's class, so an event
type registered there is written with no change here.
"""

from datetime import datetime
from typing import Any, cast, overload

from contracts.audit import AuditEvent
from contracts.envelope import AuditEnvelope, EventEnvelope, NotificationEnvelope
from contracts.notification import NotificationEvent
from contracts.registry import spec_for_data


@overload
def new_envelope(
    data: AuditEvent,
    *,
    source: str,
    subject: str | None = ...,
    correlationid: str | None = ...,
    dataschema: str | None = ...,
    event_id: str | None = ...,
    time: datetime | None = ...,
) -> AuditEnvelope: ...
@overload
def new_envelope(
    data: NotificationEvent,
    *,
    source: str,
    subject: str | None = ...,
    correlationid: str | None = ...,
    dataschema: str | None = ...,
    event_id: str | None = ...,
    time: datetime | None = ...,
) -> NotificationEnvelope: ...
@overload
def new_envelope(
    data: Any,
    *,
    source: str,
    subject: str | None = ...,
    correlationid: str | None = ...,
    dataschema: str | None = ...,
    event_id: str | None = ...,
    time: datetime | None = ...,
) -> EventEnvelope: ...
def new_envelope(
    data: Any,
    *,
    source: str,
    subject: str | None = None,
    correlationid: str | None = None,
    dataschema: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> EventEnvelope:
    """Wrap an event in its envelope (current schema version of its type).

    Args:
        data: The event: an instance of a registered version's ``data`` model.
        source: CloudEvents ``source``, e.g. ``/producer``.
        subject: CloudEvents ``subject``, e.g. ``invoice/INV-1042``.
        correlationid: Request or flow id (also the Service Bus correlation id).
        dataschema: Absolute URI of the data schema, if you publish one.
        event_id: Event id; a new UUID4 when omitted. Pass the same id when re-publishing
            the same event so Service Bus duplicate detection can drop the copy.
        time: Acceptance time (aware); now when omitted. Stored as UTC, whole milliseconds.

    Returns:
        The typed envelope (e.g. :class:`~contracts.envelope.AuditEnvelope`).

    Raises:
        KeyError: no registered event type carries ``data``'s class.
        pydantic.ValidationError: an attribute breaks its constraint (e.g. empty source).
    """
    attributes: dict[str, Any] = {
        "data": data,
        "source": source,
        "subject": subject,
        "correlationid": correlationid,
        "dataschema": dataschema,
    }
    if event_id is not None:
        attributes["id"] = event_id
    if time is not None:
        attributes["time"] = time
    envelope = spec_for_data(data).envelope.model_validate(attributes)
    # Typed as the shipped envelopes, like contracts.parsing.validate_envelope's result.
    return cast(EventEnvelope, envelope)
